"""Running a node as a program: one error line and exit 1 when it cannot start, a quiet
exit with status 0 on Ctrl-C or SIGTERM (rclpy turns both into a context shutdown).

Under ``ros2 launch`` a Ctrl-C in the terminal reaches every node twice: from the terminal
(the whole process group) and again from launch itself. The second one must not interrupt
the clean-up with a ``KeyboardInterrupt`` traceback, so once shutdown has begun the process
ignores further SIGINT and SIGTERM; the clean-up is bounded (the node waits at most
``STOP_TIMEOUT_S`` for a frame in flight), well within launch's own escalation to SIGKILL.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import threading
from collections.abc import Callable

import rclpy
from rclpy.exceptions import ParameterException
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from rclpy.utilities import get_rmw_implementation_identifier

from ..entry_points import exit_with_parent
from ..errors import HydraNetError
from ..memory import keep_freed_memory
from .transport import configure_large_data


def ignore_further_signals() -> None:
    """Shutdown has begun: another Ctrl-C or SIGTERM must not break off the clean-up."""
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)


def run_node(create: Callable[[], Node], name: str, args: list[str] | None = None,
             done: Callable[[Node], bool] | None = None,
             on_exit: Callable[[Node], None] | None = None, large_data: bool = False) -> int:
    """Create the node with ``create`` and spin it until shutdown (or until ``done``).

    ``large_data``: the node publishes large samples, so its DDS participant gets the
    large-data transport (see ``transport.py``); the log says which transport is in effect.
    Every node keeps freed memory (``memory.py``): each image or cloud it receives or
    publishes is a buffer of that size, which would otherwise be page-faulted in again.
    """
    keep_freed_memory()
    exit_with_parent()  # started by a command (the demo, the soak): ends with it
    rclpy.init(args=args)
    transport = configure_large_data(get_rmw_implementation_identifier()) if large_data else None
    try:
        node = create()
    except (KeyboardInterrupt, ExternalShutdownException):  # stopped while starting
        ignore_further_signals()
        rclpy.try_shutdown()
        return 0
    except Exception as exc:  # noqa: BLE001
        ignore_further_signals()
        if not rclpy.ok():  # SIGTERM while starting: rclpy shut the context, raising nothing,
            return 0  # and what came next failed on it (a subscription, a download's check)
        if not isinstance(exc, (HydraNetError, ParameterException)):
            raise
        rclpy.logging.get_logger(name).error(str(exc))
        rclpy.try_shutdown()
        return 1
    if transport is not None:
        logger = node.get_logger()
        (logger.warning if transport.warning else logger.info)(transport.message)
    try:
        if done is None:
            rclpy.spin(node)
        else:
            while rclpy.ok() and not done(node):
                rclpy.spin_once(node, timeout_sec=0.1)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except Exception:  # noqa: BLE001
        if rclpy.ok():
            raise  # a real failure
        # the shutdown raced a callback (a publish on the context being closed): not an error
    finally:
        ignore_further_signals()
        if on_exit is not None:
            on_exit(node)
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


def exit_now(code: int, threads: tuple[str, ...]) -> None:
    """Exit with ``code``; without Python's finalisation where a thread named in ``threads``
    is still alive after the node's bounded clean-up.

    Such a thread is inside native work that cannot be interrupted (the first frame's
    OpenVINO export and compilation take seconds), and finalising the interpreter under it
    aborts the process (std::terminate: exit status -6 instead of 0). The node is destroyed
    and the context shut down by then: only the C and Python streams are left to flush."""
    if any(t.is_alive() and t.name in threads for t in threading.enumerate()):
        sys.stdout.flush()
        sys.stderr.flush()
        ctypes.CDLL(None).fflush(None)
        os._exit(code)
    sys.exit(code)
