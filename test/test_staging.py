"""Outputs written aside and moved into place whole (hydranet-bag's and hydranet-fleet's)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest

from hydranet_ros import staging
from hydranet_ros.staging import (PARTIAL, RECORD, REPLACED, owner_of, partial_folder, publish,
                                  read_record, remove_made_folders, remove_partials)


def gone_pid() -> int:
    """The pid of a process that has ended."""
    return int(subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                              capture_output=True, text=True, check=True).stdout)


def test_only_partials_of_processes_gone_are_removed(tmp_path):
    """What a killed run left goes; what a running one writes (another run into the same
    folder, a fleet worker) stays, as does another host's, whose process cannot be asked."""
    host, gone = socket.gethostname(), gone_pid()
    running = partial_folder(tmp_path / "drive")
    names = {"running": running.name,
             "gone": f".drive{PARTIAL}{host}-{gone}-0badf00d",
             "elsewhere": f".drive{PARTIAL}some-other-host-{gone}-0badf00d",
             "old": f".drive{PARTIAL}0badf00d"}  # an earlier version's: no owner
    for name in names.values():
        (tmp_path / name).mkdir()
    (tmp_path / "drive").mkdir()
    removed = remove_partials(tmp_path)
    assert sorted(p.name for p in removed) == sorted([names["gone"], names["old"]])
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["drive", names["running"], names["elsewhere"]])
    assert owner_of(tmp_path / names["elsewhere"]) == ("some-other-host", gone)


def test_partials_of_named_owners_go_and_names_are_not_patterns(tmp_path):
    """A fleet run removes what its own stopped workers left, whatever their host, and
    nothing of another run; an output named like a glob pattern (run[1]) matches itself
    only, and one with '.partial-' in its name is still cleaned up."""
    own, other = ("worker-host", 41), ("worker-host", 42)
    for name, (host, pid) in (("run[1]", own), ("run1", own), ("a.partial-b", own),
                              ("run[1]", other)):
        (tmp_path / f".{name}{PARTIAL}{host}-{pid}-0badf00d").mkdir()
    assert [p.name for p in remove_partials(tmp_path, "run[1]", owners={own})] == [
        f".run[1]{PARTIAL}worker-host-41-0badf00d"]
    assert [p.name for p in remove_partials(tmp_path, "a.partial-b", owners={own})] == [
        f".a.partial-b{PARTIAL}worker-host-41-0badf00d"]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([
        f".run1{PARTIAL}worker-host-41-0badf00d", f".run[1]{PARTIAL}worker-host-42-0badf00d"])


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


def test_an_interrupted_swap_keeps_the_earlier_output(tmp_path, monkeypatch):
    """The new output failing to take the old one's place: the old one is moved back. And
    where a process was killed between the two renames, the next run moves it back."""
    output = tmp_path / "drive"
    output.mkdir()
    (output / "old.mcap").write_text("old")
    partial = partial_folder(output)
    (partial / output.name).mkdir(parents=True)
    real_replace = os.replace

    def fail_second(source, target):
        if str(source).endswith(f"/{output.name}") and PARTIAL in str(source):
            raise KeyboardInterrupt
        return real_replace(source, target)
    monkeypatch.setattr(staging.os, "replace", fail_second)
    with pytest.raises(KeyboardInterrupt):
        publish(partial, output, {})
    monkeypatch.undo()
    assert (output / "old.mcap").read_text() == "old"
    killed = tmp_path / f".drive{REPLACED}{socket.gethostname()}-{gone_pid()}-0badf00d"
    real_replace(output, killed)  # as a process killed between the renames leaves it
    assert remove_partials(tmp_path, "drive") == []
    assert (output / "old.mcap").read_text() == "old" and not killed.exists()


def test_only_empty_folders_made_for_an_output_are_removed(tmp_path):
    """A failed run removes the folders it made for its output, but not one that another
    run has since put its own output into."""
    made = tmp_path / "new"
    (made / "day" / "other").mkdir(parents=True)
    remove_made_folders(made / "day", made)
    assert (made / "day" / "other").is_dir()
    (made / "day" / "other").rmdir()
    remove_made_folders(made / "day", made)
    assert not made.exists() and tmp_path.is_dir()
