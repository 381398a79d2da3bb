"""Test runs keep apart: each holds a ROS domain of its own within 1..101, and no test writes
into the user's cache."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from conftest import REPO
from isolation import DOMAINS, claim_domain, is_claimed


def test_this_run_holds_its_domain_within_the_safe_range():
    domain = int(os.environ["ROS_DOMAIN_ID"])
    assert domain in DOMAINS and domain != 0
    assert is_claimed(domain)


def test_a_concurrent_run_gets_another_domain():
    code = "import sys; sys.path.insert(0, 'test'); from isolation import claim_domain; " \
           "print(claim_domain(), claim_domain())"
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    theirs = {int(v) for v in done.stdout.split()}
    assert len(theirs) == 2 and int(os.environ["ROS_DOMAIN_ID"]) not in theirs
    assert all(d in DOMAINS for d in theirs)
    # they ended with that process: free again (no stale locks)
    assert not any(is_claimed(d) for d in theirs)


def test_a_second_domain_for_this_run_differs_from_the_first():
    assert claim_domain() != int(os.environ["ROS_DOMAIN_ID"])


def test_each_test_has_its_own_cache(own_cache):
    cache = Path(os.environ["XDG_CACHE_HOME"])
    assert cache == own_cache and cache.is_dir() and not any(cache.iterdir())
    assert Path.home() / ".cache" not in [cache, *cache.parents]
