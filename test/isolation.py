"""What keeps test runs apart: a ROS domain of their own, and caches of their own.

ROS 2 documents domain ids 0 to 101 as safe on Linux (higher ones collide with ephemeral
ports); 0 is every ROS user's default, so test runs take ids from 1 to 101. A run holds an
exclusive ``flock`` on a lock file per id for as long as its process lives: the kernel
releases it when the process ends, however it ends, so there are no stale locks, and two runs
on one machine never share a domain.
"""

from __future__ import annotations

import fcntl
import os
import tempfile
from pathlib import Path

DOMAINS = range(1, 102)
LOCK_DIR = Path(tempfile.gettempdir()) / "hydranet_ros_test_domains"
_held: dict[int, object] = {}  # domain -> its open lock file, kept open for the process's life


def claim_domain() -> int:
    """A ROS domain id no other running test process holds (and this one did not yet take)."""
    LOCK_DIR.mkdir(exist_ok=True)
    first = os.getpid() % len(DOMAINS)
    for step in range(len(DOMAINS)):
        domain = DOMAINS[(first + step) % len(DOMAINS)]
        if domain in _held:
            continue
        lock = open(LOCK_DIR / f"{domain}.lock", "a+")  # noqa: SIM115 (held until exit)
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.close()
            continue
        lock.seek(0)
        lock.truncate()
        lock.write(f"{os.getpid()}\n")
        lock.flush()
        _held[domain] = lock
        return domain
    raise RuntimeError(f"no free ROS domain id in {DOMAINS.start}..{DOMAINS.stop - 1} for "
                       f"this test run (lock files in {LOCK_DIR})")


def is_claimed(domain: int) -> bool:
    """Whether some process (this one included) holds ``domain``."""
    if domain in _held:
        return True
    with open(LOCK_DIR / f"{domain}.lock", "a+") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(lock, fcntl.LOCK_UN)
        return False
