"""Outputs written aside and moved into place whole (hydranet-bag's and hydranet-fleet's)."""

from __future__ import annotations

import json
import socket
import subprocess
import sys

from hydranet_ros.staging import (PARTIAL, RECORD, partial_folder, publish, read_record,
                                  remove_stale_partials)


def test_only_partials_of_processes_gone_are_removed(tmp_path):
    """What a killed run left goes; what a running one writes (another run into the same
    folder, a fleet worker) stays, as does another host's, whose process cannot be asked."""
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout.strip()
    host = socket.gethostname()
    running = partial_folder(tmp_path / "drive")
    names = {"running": running.name,
             "gone": f".drive{PARTIAL}{host}-{gone}-0badf00d",
             "elsewhere": f".drive{PARTIAL}some-other-host-{gone}-0badf00d",
             "old": f".drive{PARTIAL}0badf00d"}  # an earlier version's: no owner
    for name in names.values():
        (tmp_path / name).mkdir()
    (tmp_path / "drive").mkdir()
    removed = remove_stale_partials(tmp_path)
    assert sorted(p.name for p in removed) == sorted([names["gone"], names["old"]])
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["drive", names["running"], names["elsewhere"]])


def test_publish_replaces_an_earlier_output_in_one_step(tmp_path):
    output = tmp_path / "drive"
    output.mkdir()
    (output / "old.mcap").write_text("old")
    partial = partial_folder(output)
    (partial / output.name).mkdir(parents=True)
    (partial / output.name / "new.mcap").write_text("new")
    publish(partial, output, {"frames": 3})
    assert sorted(p.name for p in output.iterdir()) == sorted(["new.mcap", RECORD])
    assert read_record(output) == {"frames": 3}
    assert json.loads((output / RECORD).read_text()) == {"frames": 3}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["drive"]
    assert read_record(tmp_path / "nothing") is None
