"""``hydranet-weights``: list, download and verify the official HydraNet checkpoints."""

from __future__ import annotations

import argparse
import sys

from .. import weights
from ..presets import get_preset, preset_names
from .common import description, run_main

PROG = "hydranet-weights"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=PROG, description=description(__doc__))
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("list", help="official and bundled checkpoints, and what is cached")
    download = commands.add_parser("download", help="download an official checkpoint")
    download.add_argument("name", choices=preset_names())
    download.add_argument("--force", action="store_true", help="download again even if cached")
    verify = commands.add_parser("verify", help="print a file's git blob id and what it is")
    verify.add_argument("file")
    verify.add_argument("--expect", metavar="NAME_OR_BLOB_ID",
                        help="fail unless the file is this preset's checkpoint or has this id")
    return parser.parse_args(argv)


def list_weights() -> int:
    print(f"cache: {weights.cache_dir()}")
    for name in preset_names():
        preset = get_preset(name)
        if preset.weights is not None:
            state = "cached" if weights.cached_path(name).exists() else "not downloaded"
            source = f"{preset.weights.file:24s} {preset.weights.git_blob}  {state}"
        elif preset.bundled_weights is not None:
            source = f"bundled with this package ({preset.bundled_weights})"
        else:
            continue
        print(f"{name:12s} {preset.num_classes:3d} classes  {preset.num_tasks} tasks  {source}")
    return 0


def verify(path: str, expect: str | None) -> int:
    blob = weights.git_blob_id(path)
    known = weights.identify(blob)
    print(f"{path}: git blob {blob} " + (f"(official '{known}' checkpoint)" if known
                                          else "(not an official checkpoint)"))
    if expect is None:
        return 0
    wanted = weights.official_preset(expect).weights.git_blob if expect in preset_names() else expect
    if blob != wanted:
        print(f"{PROG}: error: {path} does not match {expect}", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.command == "list":
        return list_weights()
    if args.command == "download":
        print(weights.download(args.name, force=args.force))
        return 0
    return verify(args.file, args.expect)


def entry_point() -> None:
    sys.exit(run_main(main, prog=PROG))


if __name__ == "__main__":
    entry_point()
