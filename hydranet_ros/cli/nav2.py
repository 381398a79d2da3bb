"""``hydranet-nav2``: the parameters of Nav2's semantic segmentation costmap layer for the
node's outputs, with the class groups of a preset (traversable, obstacle, ...)."""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from ..errors import HydraNetError
from ..navigation import nav2_params_yaml
from ..presets import get_preset, preset_names
from .common import description, run_main

PROG = "hydranet-nav2"
#: a ROS name's tokens: a letter or underscore, then letters, digits or underscores
TOKEN = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def namespace(text: str) -> str:
    """A ROS namespace, checked: a typo here would leave Nav2 waiting on topics no one
    publishes, so the file is refused rather than written."""
    tokens = text.strip("/").split("/") if text.strip("/") else []
    bad = next((t for t in tokens if not TOKEN.fullmatch(t)), None)
    if bad is not None:
        raise argparse.ArgumentTypeError(
            f"'{text}' is not a ROS namespace: '{bad}' (names are letters, digits and _, "
            "not starting with a digit, separated by /)")
    return text


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=PROG, description=description(__doc__))
    parser.add_argument("--preset", required=True, choices=preset_names(),
                        help="the preset the node runs with (its class names)")
    parser.add_argument("--namespace", default="hydranet", type=namespace,
                        help="the node's namespace (hydranet.launch.py's default: hydranet)")
    parser.add_argument("--out", type=Path, help="file to write (default: standard output)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    text = nav2_params_yaml(get_preset(args.preset), args.namespace)
    if args.out is None:
        sys.stdout.write(text)
        return 0
    if args.out.exists() and not args.overwrite:
        raise HydraNetError(f"refusing to overwrite {args.out} (use --overwrite)")
    args.out.write_text(text)
    print(f"{PROG}: wrote {args.out}", file=sys.stderr)
    return 0


def entry_point() -> None:
    sys.exit(run_main(main, prog=PROG))


if __name__ == "__main__":
    entry_point()
