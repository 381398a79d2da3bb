"""Output paths checked against their inputs, shared by the commands that write next to
recordings (hydranet-bag, hydranet-fleet), so that replacing an output never touches an input."""

from __future__ import annotations

from pathlib import Path


def overlapping(source: Path, target: Path) -> bool:
    """Whether writing ``target`` (or replacing it) would touch ``source``: the same path,
    one holding the other."""
    source, target = source.resolve(), target.resolve()
    return target == source or target in source.parents or source in target.parents
