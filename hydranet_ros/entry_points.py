"""The console scripts' entry points, kept free of heavy imports.

A command or node imports torch (and rclpy) for about two seconds before its own Ctrl-C
handling exists; a Ctrl-C then, or a ``ros2 launch`` shut down while its nodes start, used to
print an import traceback. Each entry point here imports its module inside a guard instead:
a command stopped while loading says ``<command>: interrupted`` (exit 130, as once running),
a node stopped while loading exits quietly with 0, as it does when stopped while starting.
"""

from __future__ import annotations

import importlib
import os
import signal
import sys

EXIT_INTERRUPTED = 130

#: console script -> module with an ``entry_point()``; setup.py installs exactly these
COMMANDS = {
    "hydranet-infer": "hydranet_ros.cli.infer",
    "hydranet-weights": "hydranet_ros.cli.weights",
    "hydranet-train": "hydranet_ros.cli.train",
    "hydranet-evaluate": "hydranet_ros.cli.evaluate",
    "hydranet-demo": "hydranet_ros.cli.demo",
    "hydranet-export": "hydranet_ros.cli.export",
    "hydranet-bench": "hydranet_ros.cli.bench",
    "hydranet-bag": "hydranet_ros.cli.bag",
    "hydranet-soak": "hydranet_ros.cli.soak",
    "hydranet-nav2": "hydranet_ros.cli.nav2",
    "hydranet-fleet": "hydranet_ros.cli.fleet",
}
NODES = {
    "hydranet_node": "hydranet_ros.ros.node",
    "synthetic_camera": "hydranet_ros.ros.synthetic_camera",
    "hydranet_evaluator": "hydranet_ros.ros.evaluator",
}


#: Signals that stop a command as Ctrl-C does: SIGTERM (``timeout``, ``docker stop``,
#: systemd, a job scheduler) and SIGHUP (its terminal closed). Python's default ends the
#: process on the spot: no clean-up, child processes orphaned, outputs half written.
STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP)
#: Set in a child process's environment to the pid of the command that started it.
PARENT_ENV = "HYDRANET_EXIT_WITH_PARENT"
PR_SET_PDEATHSIG = 1  # linux/prctl.h


def stop_signals_as_interrupt() -> dict:
    """``STOP_SIGNALS`` raise KeyboardInterrupt, so that a command stops as on Ctrl-C: what
    it finished is kept, the rest cleaned up, its children stopped. Call from the main
    thread (again after a library that sets its own handler, as ``ray.init`` does). Returns
    the handlers replaced, for ``signal.signal`` to put back."""
    def interrupt(signum, frame):
        raise KeyboardInterrupt
    return {sig: signal.signal(sig, interrupt) for sig in STOP_SIGNALS}


def child_environment() -> dict[str, str]:
    """What a command adds to a child process's environment so that the child ends with
    it (``exit_with_parent``), however the command ends, SIGKILL included."""
    return {PARENT_ENV: str(os.getpid())}


def exit_with_parent() -> None:
    """In a child started with ``child_environment()``: SIGTERM (a clean stop) when the
    command that started it ends, through Linux's parent-death signal; at once if it has
    ended already. Elsewhere, or not started so, nothing."""
    parent = os.environ.pop(PARENT_ENV, None)
    if parent is None or not sys.platform.startswith("linux"):
        return
    try:
        import ctypes
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
    except (OSError, AttributeError):
        return
    if os.getppid() != int(parent):  # gone before the signal was asked for
        os.kill(os.getpid(), signal.SIGTERM)


def start(name: str) -> None:
    """Import the module of console script ``name`` and run its ``entry_point``."""
    try:
        module = importlib.import_module(NODES.get(name) or COMMANDS[name])
    except KeyboardInterrupt:
        sys.exit(_interrupted(name))
    module.entry_point()


def _interrupted(name: str) -> int:
    """A console script stopped while loading: its line (a command's; a node has none) is
    printed, and its exit status returned."""
    if name in NODES:
        return 0
    print(f"{name}: interrupted", file=sys.stderr)
    return EXIT_INTERRUPTED


def guard_run_as_module() -> None:
    """``python -m hydranet_ros.<package>.<module>`` stopped while loading: as its script.

    Run so, a module's own imports (torch) happen outside any ``try``: a Ctrl-C then ends in
    Python's last resort, ``sys.excepthook``, which would print a traceback. While Python
    imports the packages above that module, ``sys.argv`` is ``["-m", ...]``; the packages
    call this then, and the hook installed ends such a run as ``start`` ends a script.
    """
    if sys.argv[:1] != ["-m"]:
        return
    names = {module: name for name, module in {**COMMANDS, **NODES}.items()}
    previous = sys.excepthook

    def hook(kind, value, traceback) -> None:
        spec = getattr(sys.modules.get("__main__"), "__spec__", None)
        name = names.get(getattr(spec, "name", None))
        if name is None or not issubclass(kind, KeyboardInterrupt):
            previous(kind, value, traceback)
            return
        code = _interrupted(name)
        sys.stderr.flush()
        os._exit(code)  # a hook cannot set the exit status, and raising in it is an error

    sys.excepthook = hook


# one function per console script (setup.py names them)


def hydranet_infer() -> None:
    start("hydranet-infer")


def hydranet_weights() -> None:
    start("hydranet-weights")


def hydranet_train() -> None:
    start("hydranet-train")


def hydranet_evaluate() -> None:
    start("hydranet-evaluate")


def hydranet_demo() -> None:
    start("hydranet-demo")


def hydranet_export() -> None:
    start("hydranet-export")


def hydranet_bench() -> None:
    start("hydranet-bench")


def hydranet_bag() -> None:
    start("hydranet-bag")


def hydranet_soak() -> None:
    start("hydranet-soak")


def hydranet_nav2() -> None:
    start("hydranet-nav2")


def hydranet_fleet() -> None:
    start("hydranet-fleet")


def hydranet_node() -> None:
    start("hydranet_node")


def synthetic_camera() -> None:
    start("synthetic_camera")


def hydranet_evaluator() -> None:
    start("hydranet_evaluator")
