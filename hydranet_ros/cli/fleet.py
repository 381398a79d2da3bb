"""``hydranet-fleet``: annotate many rosbag2 recordings at once, as Ray tasks (a local Ray
instance by default, an existing cluster with --ray-address), resumable, nothing lost."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tqdm import tqdm

from .. import weights as weights_mod
from ..errors import HydraNetError
from ..fleet import REPORT, FleetOptions, Settings, run_fleet, weights_digest
from ..outputs import OUTPUT_BY_NAME
from .bag import add_annotation_arguments
from .common import EXIT_ERROR, EXIT_INTERRUPTED, description, run_main

PROG = "hydranet-fleet"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=PROG, description=description(__doc__))
    parser.add_argument("inputs", nargs="+", metavar="BAG_OR_GLOB_OR_FOLDER",
                        help="bag folders, globs of them, or folders searched for bags")
    parser.add_argument("--out", required=True, type=Path,
                        help="output folder: one annotated bag per input, same name")
    add_annotation_arguments(parser)
    parser.add_argument("--workers", type=int, default=2,
                        help="Ray workers (actors), each with the model loaded once")
    parser.add_argument("--ray-address", help="an existing Ray cluster (auto, ray://HOST:10001); "
                        "default: a local Ray instance for this run")
    parser.add_argument("--threads-per-worker", type=int,
                        help="threads per worker (default: the cores divided among the local workers)")
    parser.add_argument("--pin-cores", action="store_true",
                        help="local Ray: pin worker i to core i (one core each)")
    parser.add_argument("--overwrite", action="store_true",
                        help="redo bags already annotated, and replace their outputs")
    return parser.parse_args(argv)


def settings_from_args(args: argparse.Namespace) -> Settings:
    outputs = tuple(o.strip() for o in args.outputs.split(",") if o.strip())
    unknown = sorted(set(outputs) - set(OUTPUT_BY_NAME))
    if unknown:
        raise HydraNetError(f"unknown output(s) {', '.join(unknown)} (choose from "
                            f"{', '.join(OUTPUT_BY_NAME)})")
    if args.every < 1 or args.workers < 1:
        raise HydraNetError("--every and --workers must be at least 1")
    path = weights_mod.resolve(args.weights)
    return Settings(args.image_topic, args.camera_info_topic, str(args.weights),
                    weights_digest(path), args.preset, args.backend, args.precision,
                    args.calibration, args.device, outputs, args.every, args.max_depth,
                    args.storage)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    settings = settings_from_args(args)
    options = FleetOptions(args.workers, args.ray_address, args.threads_per_worker,
                           args.pin_cores, args.overwrite)

    def say(line: str) -> None:
        tqdm.write(f"{PROG}: {line}", file=sys.stderr)
    with tqdm(unit="frame", desc="annotating", file=sys.stderr, dynamic_ncols=True) as bar:
        try:
            report = run_fleet(args.inputs, args.out, settings, options, say, bar)
        except KeyboardInterrupt:
            say("interrupted; run the same command again to annotate the rest")
            return EXIT_INTERRUPTED
    failed = len(report["failed"]) + len(report["refused"])
    print(f"{PROG}: {len(report['annotated'])} bag(s) annotated ({report['frames']} frames), "
          f"{len(report['already_done'])} already done, {failed} failed or refused, in "
          f"{report['seconds']:.0f} s; report: {args.out / REPORT}", file=sys.stderr)
    return EXIT_ERROR if failed else 0


def entry_point() -> None:
    sys.exit(run_main(main, prog=PROG))


if __name__ == "__main__":
    entry_point()
