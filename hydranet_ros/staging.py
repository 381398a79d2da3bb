"""Outputs written aside and moved into place whole: hydranet-bag's and hydranet-fleet's.

An annotated bag is written inside a hidden partial folder beside its final place
(``.NAME.partial-HOST-PID-XXXXXXXX/NAME``, so that the bag's own files carry their final
name from the start) and moved out with one rename when it is finished, carrying a record of
what made it (``RECORD``). So:

- a run that fails, or is killed, never leaves a half-written bag under the final name, and
  an earlier output it was to replace stays as it was until the new one is complete (moved
  aside for the moment of the swap as ``.NAME.replaced-HOST-PID-XXXXXXXX``, and moved back
  if the swap is interrupted, or by the next run if the process was killed in it);
- only a folder holding a record is ever replaced: a recording given as the output by
  mistake is refused, however rosbag2-like it is;
- what a killed run left (its owner process is gone) is removed by the next run writing
  there; a partial folder whose process still runs (another run into the same folder) is
  left alone.
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import signal
import socket
import threading
import uuid
from contextlib import contextmanager
from pathlib import Path

#: Written inside every finished output: what it was made from, and how.
RECORD = "hydranet_annotation.json"
PARTIAL = ".partial-"
#: An earlier output moved aside while the new one takes its place.
REPLACED = ".replaced-"

Owner = tuple[str, int]  # (host, pid)


def looks_partial(path: Path) -> bool:
    """Named as partial (or moved-aside) folders are: never a final output."""
    return path.name.startswith(".") and (PARTIAL in path.name or REPLACED in path.name)


def this_process() -> Owner:
    return socket.gethostname(), os.getpid()


def _owned_name(output: Path, kind: str) -> Path:
    host, pid = this_process()
    return output.with_name(f".{output.name}{kind}{host}-{pid}-{uuid.uuid4().hex[:8]}")


def partial_folder(output: Path) -> Path:
    """A new hidden folder beside ``output`` to write it in, as ``<folder>/<output's name>``
    (rosbags names a bag's data file after its folder). Its name says which process on which
    host owns it, for ``remove_partials``."""
    return _owned_name(output, PARTIAL)


def owner_of(folder: Path) -> Owner | None:
    """(host, pid) of the process that made a partial or moved-aside folder; None for a
    name without one (an earlier version's)."""
    kind = PARTIAL if PARTIAL in folder.name else REPLACED
    owner = folder.name.rsplit(kind, 1)[-1]
    try:
        host, pid, _ = owner.rsplit("-", 2)
        return host, int(pid)
    except ValueError:
        return None


def _running(owner: Owner | None) -> bool:
    """Whether ``owner`` still runs: unknowable for another host's process (taken as
    running), false for no owner."""
    if owner is None:
        return False
    host, pid = owner
    if host != socket.gethostname():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process
    return True


def _leftovers(folder: Path, name: str) -> list[Path]:
    """The partial and moved-aside folders in ``folder`` of the output ``name`` ('*': any)."""
    pattern = "*" if name == "*" else glob.escape(name)
    return sorted(p for kind in (PARTIAL, REPLACED)
                  for p in folder.glob(f".{pattern}{kind}*") if p.is_dir())


def remove_partials(folder: Path, name: str = "*",
                    owners: set[Owner] | None = None) -> list[Path]:
    """Partial folders in ``folder`` (of the output ``name``, or any) made by ``owners``
    (processes known to be gone or stopped), or by default by processes that no longer run:
    removed, and returned. An earlier output left moved aside by a process killed while
    replacing it goes back in place if nothing took its place, else it goes too."""
    removed = []
    for path in _leftovers(folder, name):
        owner = owner_of(path)
        if (owner in owners) if owners is not None else not _running(owner):
            if REPLACED in path.name and _restore(path):
                continue
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


def _restore(aside: Path) -> bool:
    """Move an earlier output moved aside back to its name, if that is free."""
    name = aside.name[1:].rsplit(REPLACED, 1)[0]
    output = aside.with_name(name)
    if os.path.lexists(output):
        return False
    os.replace(aside, output)
    return True


def read_record(output: Path) -> dict | None:
    """The record inside ``output``; None where there is none (not an output of ours)."""
    try:
        return json.loads((output / RECORD).read_text())
    except (OSError, ValueError):
        return None


@contextmanager
def _signals_held():
    """Ctrl-C and SIGTERM wait until the block is done (in the main thread, where Python
    raises for them): a swap of two folders is not left half done."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    held = {signal.SIGINT, signal.SIGTERM}
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, held)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def publish(partial: Path, output: Path, record: dict) -> None:
    """Make the finished output in ``partial`` final: the record goes in first, then one
    rename (an output being replaced is moved aside first, moved back if the rename fails,
    and removed after), then the empty partial folder goes."""
    done = partial / output.name
    (done / RECORD).write_text(json.dumps(record, indent=1) + "\n")
    aside = None
    with _signals_held():
        if os.path.lexists(output):
            aside = _owned_name(output, REPLACED)
            os.replace(output, aside)
        try:
            os.replace(done, output)
        except BaseException:
            if aside is not None:
                os.replace(aside, output)
            raise
    partial.rmdir()
    if aside is not None:
        shutil.rmtree(aside, ignore_errors=True)


def remove_made_folders(path: Path, made: Path) -> None:
    """The folders from ``path`` up to ``made`` (folders a run made for its output), each
    only if it is empty: another run may have put its own output there since."""
    while True:
        try:
            path.rmdir()
        except OSError:
            return
        if path == made or path.parent == path:
            return
        path = path.parent
