"""``hydranet-evaluate``: accuracy of a checkpoint on the synthetic held-out frames or on a
folder of annotated images (the training data layout), with the metrics the evaluator node
and the training use."""

from __future__ import annotations

import argparse
import json
import sys

from ..evaluation import evaluate_folder, evaluate_held_out, max_depth_of
from ..metrics import format_summary
from .common import (add_engine_arguments, description, positive, predictor_from_args, run_main,
                     whole_number)

PROG = "hydranet-evaluate"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=PROG, description=description(__doc__))
    parser.add_argument("--weights", default="synthetic", help="checkpoint or preset name")
    parser.add_argument("--preset", help="class names and depth range (default: the weights')")
    parser.add_argument("--data", default="synthetic",
                        help="'synthetic' (held-out frames) or a folder (images/, labels/, ...)")
    parser.add_argument("--frames", type=whole_number(1), default=50,
                        help="held-out frames (synthetic)")
    parser.add_argument("--depth-scale", type=positive, default=1000.0,
                        help="depth PNG value per metre (folder data)")
    add_engine_arguments(parser)
    parser.add_argument("--json", action="store_true", help="print the full summary as JSON")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    predictor = predictor_from_args(args)
    if predictor.preset.depth_range is None:
        print(f"{PROG}: note: the weights ({predictor.preset.description}) match no preset, "
              f"so there is no depth range: depth is scored up to "
              f"{max_depth_of(predictor.preset):g} m", file=sys.stderr)
    if args.data == "synthetic":
        summary = evaluate_held_out(predictor, args.frames)
    else:
        summary = evaluate_folder(predictor, args.data, args.depth_scale)
    print(json.dumps(summary, indent=2) if args.json else format_summary(summary))
    return 0


def entry_point() -> None:
    sys.exit(run_main(main, prog=PROG))


if __name__ == "__main__":
    entry_point()
