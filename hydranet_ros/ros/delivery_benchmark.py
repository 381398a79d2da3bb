"""What subscribers in another process receive, and when: the node as a consumer sees it.

``synthetic_camera`` and ``hydranet_node`` run as child processes; this process is the
consumer and subscribes to every output twice, reliable and best-effort (depth 5 each, as
navigation nodes and ``ros2 topic hz`` do), with Fast DDS's default settings. Messages are
taken serialised: the consumer only reads the header stamp, so that it keeps up on a small
machine. Per output and reliability it reports the share of the frames the node processed
(``frames processed`` in its /diagnostics) that arrived, and the stamp-to-receipt latency
p50/p90, next to the node's own stamp-to-publish p50.
"""

from __future__ import annotations

import os
import struct
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..memory import keep_freed_memory
from ..outputs import OUTPUTS
from .diagnostics import LONG_RUN_KEY
from .processes import start, stop
from .transport import SWITCH

RELIABILITIES = ("reliable", "best_effort")
NODE_NAME = "hydranet"
#: Seconds without a new processed frame after the camera is done: the run is over.
SETTLE_S = 2.0
START_TIMEOUT_S = 120.0


def cdr_stamp(raw: bytes) -> tuple[int, int]:
    """The header stamp (sec, nanosec) of a serialised message that starts with a
    std_msgs/Header: after the 4-byte CDR encapsulation, int32 sec and uint32 nanosec."""
    little = raw[1] == 1  # CDR_LE / PL_CDR_LE; 0 for big-endian
    return struct.unpack_from("<iI" if little else ">iI", raw, 4)


@dataclass
class Received:
    """Per (topic, reliability) and stamp: when the subscriber's DDS reader got the sample
    (its reception timestamp) and when the callback ran, both wall-clock seconds."""
    times: dict[tuple[str, str], dict[tuple[int, int], tuple[float, float]]] = field(
        default_factory=lambda: defaultdict(dict))

    def record(self, topic: str, reliability: str, raw: bytes, info) -> None:
        stamp = cdr_stamp(raw)
        self.times[(topic, reliability)].setdefault(
            stamp, (info["received_timestamp"] * 1e-9, time.time()))


class Consumer:
    """This process's node: the subscriptions and the node's /diagnostics."""

    def __init__(self, namespace: str, topics: dict[str, type], reliabilities,
                 depth: int = 5) -> None:
        import rclpy
        from diagnostic_msgs.msg import DiagnosticArray
        from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy

        keep_freed_memory()  # a subscriber of large samples, set up as the README advises
        self.node = rclpy.create_node("hydranet_delivery_consumer", namespace=namespace)
        self.received = Received()
        self.diagnostics: dict[str, str] = {}
        self.status_name = f"{namespace.rstrip('/')}/{NODE_NAME}: HydraNet"
        self.subscriptions = []
        for reliability in reliabilities:
            qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=depth, reliability={
                "reliable": ReliabilityPolicy.RELIABLE,
                "best_effort": ReliabilityPolicy.BEST_EFFORT}[reliability])
            for topic, msg_type in topics.items():
                self.subscriptions.append(self.node.create_subscription(
                    msg_type, topic, lambda raw, info, t=topic, r=reliability:
                    self.received.record(t, r, raw, info), qos, raw=True))
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diagnostics, 10)

    def _on_diagnostics(self, msg) -> None:
        for status in msg.status:
            if status.name == self.status_name:
                self.diagnostics = {kv.key: kv.value for kv in status.values}

    def matched(self) -> bool:
        return all(s.get_publisher_count() > 0 for s in self.subscriptions)

    def spin_for(self, seconds: float) -> None:
        import rclpy
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            rclpy.spin_once(self.node, timeout_sec=min(0.05, left))

    def processed(self) -> int:
        return int(self.diagnostics.get("frames processed", 0))

    def all_accounted(self) -> bool:
        """Every frame the node received is processed, dropped, rejected or skipped."""
        d = {k: int(self.diagnostics.get(k, 0)) for k in (
            "frames received", "frames processed", "frames dropped", "frames rejected",
            "frames skipped, no subscribers")}
        return d["frames received"] > 0 and d["frames received"] <= (
            d["frames processed"] + d["frames dropped"] + d["frames rejected"]
            + d["frames skipped, no subscribers"])


def _latency_ms(stamps: dict[tuple[int, int], tuple[float, float]], which: int) -> list[float]:
    """Stamp to reception (``which`` 0) or to the callback (1), milliseconds."""
    return [(times[which] - sec - nsec * 1e-9) * 1e3 for (sec, nsec), times in stamps.items()]


def _percentile(values: list[float], q: float) -> float | None:
    return round(float(np.percentile(values, q)), 1) if values else None


def measure_delivery(weights: str, rate: float, frames: int, size: tuple[int, int] = (480, 640),
                     backend: str = "auto", device: str = "cpu", dds_profile: bool = True,
                     outputs: tuple[str, ...] | None = None,
                     reliabilities: tuple[str, ...] = RELIABILITIES, qos_depth: int = 5,
                     node_params: dict | None = None, logs: Path | None = None,
                     progress=None, camera_params: dict | None = None) -> dict:
    """One run: the camera publishes ``frames`` frames of ``size`` (height, width) at
    ``rate`` Hz into a fresh node; returns what the consumer received and when.

    ``dds_profile=False`` starts the camera and the node with ``HYDRANET_DDS_PROFILE=off``
    (Fast DDS's defaults), to see what the profile changes. ``outputs`` limits the
    subscriptions (the node computes only what is subscribed). ``camera_params``: more
    parameters of the synthetic camera (e.g. ``still`` for rates beyond its renderer).
    """
    import rclpy
    from rclpy.signals import SignalHandlerOptions

    from .conversions import output_topic_types

    names = outputs or tuple(spec.name for spec in OUTPUTS)
    height, width = size
    namespace = f"/hydranet_delivery_{os.getpid()}"
    env = {} if dds_profile else {SWITCH: "off"}
    env.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE",
                   os.environ.get("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST"))
    with tempfile.TemporaryDirectory() as tmp:
        logs = logs or Path(tmp)
        params = {"weights": weights, "backend": backend, "device": device,
                  "diagnostics_period": 0.5, **(node_params or {})}
        processes: dict = {}
        own_context = not rclpy.ok()
        if own_context:
            # signals stay the command's (Ctrl-C, SIGTERM: KeyboardInterrupt, then clean-up)
            rclpy.init(signal_handler_options=SignalHandlerOptions.NO)
        consumer = None
        try:  # from the first child on: a Ctrl-C at any point stops every child started
            processes["hydranet_node"] = start("hydranet_node", "hydranet_ros.ros.node", params,
                                               logs, namespace, env)
            probe = rclpy.create_node("hydranet_delivery_probe", namespace=namespace)
            try:
                model_topics = _node_topics(probe, processes["hydranet_node"], logs)
            finally:
                probe.destroy_node()
            topics = {t: m for t, m in output_topic_types(names).items() if t in model_topics}
            consumer = Consumer(namespace, topics, reliabilities, qos_depth)
            _wait(consumer.matched, processes, logs, "the node's publishers did not match "
                  "the consumer's subscriptions")
            processes["synthetic_camera"] = start(
                "synthetic_camera", "hydranet_ros.ros.synthetic_camera",
                {"rate": float(rate), "width": width, "height": height, "frames": frames,
                 "held_out": "true", "wait_for_subscriber": "true", **(camera_params or {})},
                logs, namespace, env)
            camera_log = logs / "synthetic_camera.log"
            started = time.monotonic()
            while "done" not in camera_log.read_text():
                consumer.spin_for(0.2)
                _check_alive(processes, logs)
                if progress is not None:
                    progress(min(frames, round((time.monotonic() - started) * rate)))
                if time.monotonic() - started > frames / rate + START_TIMEOUT_S:
                    raise RuntimeError(f"the camera did not finish; see {camera_log}")
            # the run ends when the node has dealt with every frame it received (a frame in
            # flight, such as a first one waiting for a one-time export, is not yet counted)
            # and nothing has changed for SETTLE_S
            deadline = time.monotonic() + START_TIMEOUT_S
            last, still_since = consumer.processed(), time.monotonic()
            while (time.monotonic() - still_since < SETTLE_S or not consumer.all_accounted()) \
                    and time.monotonic() < deadline:
                consumer.spin_for(0.1)
                _check_alive(processes, logs)
                if consumer.processed() != last:
                    last, still_since = consumer.processed(), time.monotonic()
            diagnostics = dict(consumer.diagnostics)
            received = consumer.received
        finally:
            if consumer is not None:
                consumer.node.destroy_node()
            if own_context:
                rclpy.try_shutdown()
            stop(processes)
    return _report(rate, frames, size, dds_profile, diagnostics, received, topics, reliabilities)


#: Seconds the node's discovered topics must stay the same: its publishers are discovered
#: one by one, so the first one seen does not mean that all are.
TOPICS_SETTLE_S = 1.0


def _node_topics(probe, proc, logs: Path) -> set[str]:
    """The node's output topics (relative), once all its publishers have been discovered."""
    namespace = probe.get_namespace().rstrip("/") + "/"
    deadline = time.monotonic() + START_TIMEOUT_S
    seen: set[str] = set()
    since = time.monotonic()
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"hydranet_node exited early; see {logs / 'hydranet_node.log'}")
        found = {name[len(namespace):] for name, _ in probe.get_topic_names_and_types()
                 if name.startswith(namespace) and probe.count_publishers(name) > 0}
        if found != seen:
            seen, since = found, time.monotonic()
        elif "segmentation/labels" in found and time.monotonic() - since >= TOPICS_SETTLE_S:
            return found
        time.sleep(0.2)
    raise RuntimeError(f"hydranet_node did not start; see {logs / 'hydranet_node.log'}")


def _check_alive(processes: dict, logs: Path) -> None:
    for name, proc in processes.items():
        if proc.poll() is not None:
            raise RuntimeError(f"{name} exited early (code {proc.returncode}); see "
                               f"{logs / (name + '.log')}")


def _wait(condition, processes: dict, logs: Path, what: str) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while not condition():
        _check_alive(processes, logs)
        if time.monotonic() > deadline:
            raise RuntimeError(what)
        time.sleep(0.1)


def _report(rate: float, frames: int, size: tuple[int, int], dds_profile: bool,
            diagnostics: dict, received: Received, topics, reliabilities) -> dict:
    processed = int(diagnostics.get("frames processed", 0))
    node_p50 = diagnostics.get(LONG_RUN_KEY)
    rows, complete = {}, {}
    for reliability in reliabilities:  # stamps of frames of which every output arrived
        stamp_sets = [set(received.times.get((topic, reliability), {})) for topic in topics]
        whole = set.intersection(*stamp_sets) if stamp_sets else set()
        complete[reliability] = sorted(sec + nsec * 1e-9 for sec, nsec in whole)
    for topic in topics:
        rows[topic] = {}
        for reliability in reliabilities:
            stamps = received.times.get((topic, reliability), {})
            latency, callback = _latency_ms(stamps, 0), _latency_ms(stamps, 1)
            rows[topic][reliability] = {
                "received": len(stamps),
                "share": round(len(stamps) / processed, 4) if processed else None,
                "latency_p50_ms": _percentile(latency, 50),
                "latency_p90_ms": _percentile(latency, 90),
                "callback_latency_p50_ms": _percentile(callback, 50)}
    return {"size": f"{size[1]}x{size[0]}", "rate_hz": rate, "frames_published": frames,
            "dds_profile": dds_profile,
            "frames_received_by_node": int(diagnostics.get("frames received", 0)),
            "frames_processed": processed,
            "node_stamp_to_publish_p50_ms": float(node_p50) if node_p50 else None,
            "node_inference_p50_ms": _float(diagnostics.get("inference time p50 (ms)")),
            "frames_with_every_output": {r: len(stamps) for r, stamps in complete.items()},
            "outputs": rows, "complete_stamps_s": complete}


#: The share of frames a rate may lose and still count as sustained (as ros2_benchmark).
PEAK_LOSS_LIMIT = 0.05
#: Seconds at the start of each rate not counted: the node's one-time work on its first
#: frame (engine compilation, CUDA graph capture).
PEAK_WARMUP_S = 2.0


def window_loss(stamps_s: list[float], rate: float, warmup_s: float = PEAK_WARMUP_S) -> dict:
    """The share of a fixed-rate camera's frames with every output at the consumer, after
    ``warmup_s`` from the first: frames expected from the stamps' span and the rate."""
    counted = [s for s in stamps_s if s >= stamps_s[0] + warmup_s]
    if len(counted) < 2:
        return {"expected": None, "received": len(counted), "lost_share": 1.0}
    expected = round((counted[-1] - counted[0]) * rate) + 1
    return {"expected": expected, "received": len(counted),
            "lost_share": round(max(0.0, 1 - len(counted) / expected), 4)}


def peak_rate(weights: str, rates: list[float], seconds: float, size: tuple[int, int],
              backend: str, device: str, node_params: dict | None = None) -> dict:
    """The node's peak rate as a best-effort consumer in another process sees it: per
    input rate (a camera republishing one frame, so that rendering does not limit it), the
    share of frames with every output received after the warm-up; the peak is the highest
    rate losing under 5 %."""
    runs = []
    for rate in rates:
        run = measure_delivery(weights, rate, round(rate * (seconds + PEAK_WARMUP_S)), size,
                               backend, device, reliabilities=("best_effort",), qos_depth=5,
                               node_params=node_params, camera_params={"still": "true", "ground_truth": "false"})
        loss = window_loss(run["complete_stamps_s"]["best_effort"], rate)
        latency = [c["best_effort"]["latency_p50_ms"] for c in run["outputs"].values()]
        runs.append({"rate_hz": rate, **loss,
                     "frames_received_by_node": run["frames_received_by_node"],
                     "frames_processed": run["frames_processed"],
                     "node_stamp_to_publish_p50_ms": run["node_stamp_to_publish_p50_ms"],
                     "reception_p50_ms_max": max((v for v in latency if v is not None),
                                                 default=None)})
    sustained = [r["rate_hz"] for r in runs if r["lost_share"] < PEAK_LOSS_LIMIT]
    return {"size": f"{size[1]}x{size[0]}", "seconds_per_rate": seconds,
            "peak_rate_hz": max(sustained) if sustained else None, "runs": runs}


def format_peak(result: dict) -> str:
    lines = [f"node peak rate at {result['size']} (every output, best-effort consumer in "
             f"another process): {result['peak_rate_hz'] or 'none of the rates'}"
             + (" Hz" if result["peak_rate_hz"] else "")]
    for r in result["runs"]:
        lines.append(f"  {r['rate_hz']:g} Hz: {r['received']} of {r['expected']} frames whole "
                     f"at the consumer ({r['lost_share'] * 100:.1f} % lost); node received "
                     f"{r['frames_received_by_node']}, processed {r['frames_processed']}, "
                     f"stamp to publish p50 {r['node_stamp_to_publish_p50_ms']} ms, reception "
                     f"p50 up to {_text(r['reception_p50_ms_max'])} ms")
    return "\n".join(lines)


def _float(text: str | None) -> float | None:
    try:
        return float(text)
    except (TypeError, ValueError):
        return None


def format_delivery(run: dict) -> str:
    """A table: per output, the share received and the latency, per reliability."""
    head = (f"{run['size']} at {run['rate_hz']:g} Hz, Fast DDS "
            f"{'large-data profile' if run['dds_profile'] else 'defaults'}: camera published "
            f"{run['frames_published']}, node received {run['frames_received_by_node']} and "
            f"processed {run['frames_processed']} (its stamp to publish p50 "
            f"{run['node_stamp_to_publish_p50_ms']} ms); frames with every output: " +
            ", ".join(f"{r.replace('_', '-')} {n}" for r, n in run["frames_with_every_output"].items()))
    reliabilities = list(next(iter(run["outputs"].values())).keys()) if run["outputs"] else []
    header = f"  {'output':<22}" + "".join(
        f" | {r.replace('_', '-') + ': got':>18} {'p50 ms':>7} {'p90 ms':>7} {'cb p50':>7}"
        for r in reliabilities)
    lines = [head, header]
    for topic, cells in run["outputs"].items():
        line = f"  {topic:<22}"
        for r in reliabilities:
            c = cells[r]
            share = f"{c['share'] * 100:.1f} %" if c["share"] is not None else "-"
            line += (f" | {c['received']:>6} = {share:>9} {_text(c['latency_p50_ms']):>7} "
                     f"{_text(c['latency_p90_ms']):>7} {_text(c['callback_latency_p50_ms']):>7}")
        lines.append(line)
    return "\n".join(lines)


def _text(value) -> str:
    return "-" if value is None else f"{value:.1f}"


def write_delivery_chart(runs: list[dict], path: Path, title: str) -> bool:
    """Bars per output: the share of processed frames each subscriber received, one panel
    per run (rate and transport)."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, axes = plt.subplots(1, len(runs), figsize=(4.5 * len(runs), 4.2), sharey=True,
                             squeeze=False)
    for ax, run in zip(axes[0], runs):
        topics = list(run["outputs"])
        reliabilities = list(run["outputs"][topics[0]]) if topics else []
        width = 0.8 / max(1, len(reliabilities))
        for i, reliability in enumerate(reliabilities):
            shares = [100 * (run["outputs"][t][reliability]["share"] or 0) for t in topics]
            ax.bar(np.arange(len(topics)) + i * width, shares, width,
                   label=reliability.replace("_", "-"))
        ax.axhline(95, color="grey", linewidth=0.8, linestyle="--")
        ax.set_xticks(np.arange(len(topics)) + 0.4 - width / 2, topics, rotation=60,
                      ha="right", fontsize=7)
        ax.set_title(f"{run['rate_hz']:g} Hz, "
                     f"{'large-data profile' if run['dds_profile'] else 'Fast DDS defaults'}",
                     fontsize=9)
    axes[0][0].set_ylabel("processed frames received (%)")
    axes[0][0].set_ylim(0, 105)
    axes[0][0].legend(fontsize=8, loc="lower left", framealpha=0.9)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True
