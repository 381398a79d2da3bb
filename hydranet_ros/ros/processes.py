"""ROS 2 nodes of this package as child processes (the demo, the soak benchmark): started
with parameters in a namespace, their output in a log file, stopped with SIGINT."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from ..entry_points import child_environment

STOP_TIMEOUT_S = 10.0


def start(name: str, module: str, params: dict, logs: Path, namespace: str,
          env: dict[str, str] | None = None) -> subprocess.Popen:
    """``python -m module`` as node ``name`` in ``namespace``, with ``env`` added to this
    process's environment; it ends with this process, however this one ends (SIGKILL
    included: ``entry_points.exit_with_parent``)."""
    args = [sys.executable, "-m", module, "--ros-args", "-r", f"__ns:={namespace}"]
    for key, value in params.items():
        args += ["-p", f"{key}:={value}"]
    log = open(logs / f"{name}.log", "w")
    return subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT,
                            env={**os.environ, "PYTHONUNBUFFERED": "1", **child_environment(),
                                 **(env or {})})


def stop(processes: dict[str, subprocess.Popen]) -> None:
    """SIGINT to each, then wait together; whatever has not exited by then is killed."""
    for proc in processes.values():
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
    deadline = time.monotonic() + STOP_TIMEOUT_S
    for proc in processes.values():
        try:
            proc.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
