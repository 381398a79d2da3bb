"""QoS profiles from parameters, and loud logging when a peer's QoS cannot match ours.

A QoS mismatch is otherwise silent: the topics exist, nothing arrives. The event callbacks
below turn it into an error line that names the topic and the policy at fault.
"""

from __future__ import annotations

from rclpy.event_handler import PublisherEventCallbacks, SubscriptionEventCallbacks
from rclpy.qos import (DurabilityPolicy, HistoryPolicy, QoSPolicyKind, QoSProfile,
                       ReliabilityPolicy)

RELIABILITY = {"best_effort": ReliabilityPolicy.BEST_EFFORT, "reliable": ReliabilityPolicy.RELIABLE}


def profile(reliability: str, depth: int) -> QoSProfile:
    """Keep-last ``depth``, volatile: the newest data wins, nothing is replayed."""
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=depth,
                      reliability=RELIABILITY[reliability], durability=DurabilityPolicy.VOLATILE)


def latched() -> QoSProfile:
    """Reliable, transient local, depth 1: a late-joining subscriber still gets the last
    message (for data that changes rarely, such as the class names)."""
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1,
                      reliability=ReliabilityPolicy.RELIABLE,
                      durability=DurabilityPolicy.TRANSIENT_LOCAL)


def _policy_name(kind) -> str:
    try:
        return QoSPolicyKind(kind).name.lower()
    except ValueError:
        return f"policy {kind}"


def subscription_events(logger, topic: str, reliability: str) -> SubscriptionEventCallbacks:
    def on_incompatible(info) -> None:
        logger.error(f"QoS incompatible on '{topic}': a publisher offers a "
                     f"{_policy_name(info.last_policy_kind)} policy this subscription cannot accept "
                     f"(it requests reliability={reliability}, durability=volatile); no data "
                     f"arrives from it ({info.total_count} incompatible publisher(s) so far)")
    return SubscriptionEventCallbacks(incompatible_qos=on_incompatible)


def publisher_events(logger, topic: str, reliability: str) -> PublisherEventCallbacks:
    def on_incompatible(info) -> None:
        logger.error(f"QoS incompatible on '{topic}': a subscriber requests a "
                     f"{_policy_name(info.last_policy_kind)} policy this publisher does not offer "
                     f"(it offers reliability={reliability}, durability=volatile); it receives "
                     f"nothing ({info.total_count} incompatible subscriber(s) so far)")
    return PublisherEventCallbacks(incompatible_qos=on_incompatible)
