"""Outputs written aside and moved into place whole: hydranet-bag's and hydranet-fleet's.

An annotated bag is written inside a hidden partial folder beside its final place
(``.NAME.partial-HOST-PID-XXXXXXXX/NAME``, so that the bag's own files carry their final
name from the start) and moved out with one rename when it is finished, carrying a record of
what made it (``RECORD``). So:

- a run that fails, or is killed, never leaves a half-written bag under the final name, and
  an earlier output it was to replace stays as it was until the new one is complete;
- only a folder holding a record is ever replaced: a recording given as the output by
  mistake is refused, however rosbag2-like it is;
- what a killed run left (its owner process is gone) is removed by the next run writing
  there; a partial folder whose process still runs (another run into the same folder) is
  left alone.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import uuid
from pathlib import Path

#: Written inside every finished output: what it was made from, and how.
RECORD = "hydranet_annotation.json"
PARTIAL = ".partial-"


def looks_partial(path: Path) -> bool:
    """Named as partial folders are: never a final output."""
    return path.name.startswith(".") and PARTIAL in path.name


def partial_folder(output: Path) -> Path:
    """A new hidden folder beside ``output`` to write it in, as ``<folder>/<output's name>``
    (rosbags names a bag's data file after its folder). Its name says which process on which
    host owns it, for ``remove_stale_partials``."""
    owner = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    return output.with_name(f".{output.name}{PARTIAL}{owner}")


def _owner_running(partial: Path) -> bool:
    """Whether the process that made ``partial`` still runs: unknowable for another host's
    (kept), false for a name without an owner (an earlier version's, or unreadable)."""
    owner = partial.name.split(PARTIAL, 1)[-1]
    try:
        host, pid, _ = owner.rsplit("-", 2)
        pid_number = int(pid)
    except ValueError:
        return False
    if host != socket.gethostname():
        return True
    try:
        os.kill(pid_number, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process
    return True


def remove_stale_partials(folder: Path, name: str = "*") -> list[Path]:
    """Partial folders in ``folder`` (of the output ``name``, or any) whose process is gone:
    removed, and returned."""
    stale = [p for p in folder.glob(f".{name}{PARTIAL}*")
             if p.is_dir() and not _owner_running(p)]
    for path in stale:
        shutil.rmtree(path, ignore_errors=True)
    return stale


def read_record(output: Path) -> dict | None:
    """The record inside ``output``; None where there is none (not an output of ours)."""
    try:
        return json.loads((output / RECORD).read_text())
    except (OSError, ValueError):
        return None


def publish(partial: Path, output: Path, record: dict) -> None:
    """Make the finished output in ``partial`` final: the record goes in first, then one
    rename (an output being replaced is moved aside first and removed after), then the empty
    partial folder goes."""
    done = partial / output.name
    (done / RECORD).write_text(json.dumps(record, indent=1) + "\n")
    old = None
    if output.exists():
        old = partial_folder(output)
        os.replace(output, old)
    os.replace(done, output)
    partial.rmdir()
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
