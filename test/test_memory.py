"""Freed frame buffers stay mapped: in this package's processes (mallopt), in processes started
with ``memory.malloc_tunables()`` in their environment, and for a Python subscriber of point
clouds in another process, over real DDS."""

from __future__ import annotations

import os
import platform
import subprocess
import sys

import pytest

from conftest import REPO, import_or_skip
from hydranet_ros.memory import TUNABLES, TUNABLES_VARIABLE, malloc_tunables

GLIBC = platform.libc_ver()[0] == "glibc"
#: Per round, as a subscriber does per cloud: three 6 MB buffers (an organized 640x480 cloud:
#: the DDS sample, the message, its Python data) allocated and filled together, then freed;
#: prints the pages faulted in per round once warmed up.
ROUNDS = """
import resource, sys
import numpy as np
if sys.argv[1] == "mallopt":
    from hydranet_ros.memory import keep_freed_memory
    assert keep_freed_memory()
def faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
def one_round():
    buffers = [np.ones(6_144_000, np.uint8) for _ in range(3)]
    del buffers
for _ in range(3):
    one_round()
before = faults()
for _ in range(20):
    one_round()
print((faults() - before) / 20)
"""


def test_tunables_keep_the_users_own_entries():
    assert malloc_tunables() == ":".join(f"{k}={v}" for k, v in TUNABLES.items())
    mine = "glibc.malloc.trim_threshold=5:glibc.malloc.arena_max=2"
    entries = malloc_tunables(mine).split(":")
    assert entries[:2] == mine.split(":")  # the user's, first and unchanged
    assert sum(e.startswith("glibc.malloc.trim_threshold=") for e in entries) == 1
    assert {e.split("=")[0] for e in entries} == set(TUNABLES) | {"glibc.malloc.arena_max"}


def faults_per_round(mode: str) -> float:
    env = {k: v for k, v in os.environ.items() if k != TUNABLES_VARIABLE}
    if mode == "tunables":
        env[TUNABLES_VARIABLE] = malloc_tunables()
    out = subprocess.run([sys.executable, "-c", ROUNDS, mode], env=env, capture_output=True,
                         text=True, check=True, cwd=REPO).stdout
    return float(out.strip())


@pytest.mark.skipif(not GLIBC, reason="the settings are glibc malloc's")
def test_freed_buffers_are_not_faulted_in_again():
    default = faults_per_round("default")
    # glibc hands the freed buffers above its trim threshold back to the kernel, so pages
    # come back in every round (measured: 924 of 4 KiB; fewer where huge pages serve them)
    assert default >= 10
    for mode in ("mallopt", "tunables"):
        assert faults_per_round(mode) <= 0.05 * default + 2, mode


@pytest.mark.skipif(not GLIBC, reason="the settings are glibc malloc's")
def test_a_subscriber_in_another_process_keeping_freed_memory_faults_nothing_in():
    """The node's 640x480 clouds to a best-effort subscriber in another process: with glibc's
    defaults every message is page-faulted in (the DDS sample, the message, its Python data);
    with the tunables nothing is (measured: 4470 pages per message against 0, the callback
    13.3 against 4.8 ms after the stamp)."""
    import_or_skip("rclpy", "rclpy is not installed (pip install -e .[ros])")
    import_or_skip("sensor_msgs", "sensor_msgs is not installed (pip install -e .[ros])")
    from hydranet_ros.ros.subscriber_memory import measure
    default = measure(tuned=False, frames=12)
    tuned = measure(tuned=True, frames=12)
    for run in (default, tuned):
        assert run["received"] >= 10, run
    assert default["faults_per_message"] >= 1000, default  # at least one 6 MB copy per message
    assert tuned["faults_per_message"] <= 0.05 * default["faults_per_message"], tuned
