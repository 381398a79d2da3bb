"""``hydranet-bag``: annotate a recorded rosbag2 (MCAP or sqlite3) with the node's outputs:
every input message is kept, and labels, depth, normals and point clouds are added on the
live node's topics, stamped and timed like the frames they come from."""

from __future__ import annotations

import argparse
import sys
from contextlib import closing
from pathlib import Path

from tqdm import tqdm

from ..errors import HydraNetError
from ..memory import keep_freed_memory
from ..outputs import OUTPUT_BY_NAME, OutputSettings
from ..presets import preset_names
from ..ros.bag import (DEFAULT_OUTPUTS, STORAGES, BagAnnotator, BagRequest, BagResult,
                       check_paths, check_topics, open_reader, selected_frames)
from .common import (EXIT_INTERRUPTED, add_engine_arguments, description,
                     predictor_from_args, run_main)

PROG = "hydranet-bag"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=PROG, description=description(__doc__))
    parser.add_argument("input", type=Path, metavar="INPUT_BAG", help="bag folder or file")
    parser.add_argument("output", type=Path, metavar="OUTPUT_BAG", help="bag folder to write")
    add_annotation_arguments(parser)
    parser.add_argument("--start", type=float, default=0.0,
                        help="seconds from the bag's start to begin annotating")
    parser.add_argument("--end", type=float, help="seconds from the bag's start to stop annotating")
    parser.add_argument("--batch", type=int, default=0,
                        help="frames per network call (0: 4 on a GPU, 1 on a CPU)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output")
    return parser.parse_args(argv)


def add_annotation_arguments(parser: argparse.ArgumentParser) -> None:
    """What to annotate and how: shared by hydranet-bag and hydranet-fleet."""
    parser.add_argument("--image-topic", required=True, help="sensor_msgs/Image or "
                        "CompressedImage topic; outputs go under its namespace")
    parser.add_argument("--camera-info-topic", help="default: <namespace>/camera_info if recorded")
    parser.add_argument("--weights", default="kitti",
                        help=f"checkpoint file or preset ({', '.join(preset_names())})")
    parser.add_argument("--preset", choices=preset_names())
    add_engine_arguments(parser)
    parser.add_argument("--outputs", default=",".join(DEFAULT_OUTPUTS),
                        help=f"comma-separated, from: {', '.join(OUTPUT_BY_NAME)}")
    parser.add_argument("--storage", choices=STORAGES, help="default: the input's")
    parser.add_argument("--every", type=int, default=1, help="annotate every N-th frame")
    parser.add_argument("--max-depth", type=float, default=0.0,
                        help="depth beyond this (m) is NaN; 0: the preset's range")


def request_from_args(args: argparse.Namespace, batch: int) -> BagRequest:
    if args.every < 1 or args.batch < 0 or args.start < 0:
        raise HydraNetError("--every must be >= 1, --batch >= 0 and --start >= 0")
    if args.end is not None and args.end < args.start:
        raise HydraNetError(f"--end ({args.end}) is before --start ({args.start})")
    return BagRequest(args.input, args.output, args.image_topic, args.camera_info_topic,
                      tuple(o.strip() for o in args.outputs.split(",") if o.strip()),
                      args.storage, args.every, args.start, args.end, batch,
                      settings=OutputSettings(max_depth=args.max_depth),
                      overwrite=args.overwrite)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # bad arguments, a bag that cannot be read and topics it lacks fail before the model loads
    request = request_from_args(args, 1)
    check_paths(request)
    with closing(open_reader(request.input)) as reader:
        check_topics(reader, request)
        total = selected_frames(reader, request.image_topic, request.every, request.start_s,
                                request.end_s)
    keep_freed_memory()  # a frame loop: keep image-sized buffers mapped between frames
    predictor = predictor_from_args(args)
    batch = args.batch or (4 if predictor.engine.device.startswith("cuda") else 1)
    annotator = BagAnnotator(request_from_args(args, batch), predictor,
                             warn=lambda line: tqdm.write(f"{PROG}: {line}", file=sys.stderr))
    with tqdm(total=total, unit="frame", desc="annotating", file=sys.stderr) as bar:
        result = annotator.run(on_frame=bar.update)
    print(f"{PROG}: {summary(result, args.output)}", file=sys.stderr)
    return EXIT_INTERRUPTED if result.interrupted else 0


def summary(result: BagResult, output: Path) -> str:
    """One line: what was annotated, skipped and copied, and the messages per output topic."""
    added = ", ".join(f"{topic} ({count})" for topic, count in result.added.items()) or "nothing"
    without = f", {result.without_cloud} without point cloud" if result.without_cloud else ""
    return (f"{'interrupted: ' if result.interrupted else ''}{result.frames} frame(s) "
            f"annotated ({result.skipped} skipped{without}), {result.messages} message(s) "
            f"copied, into {output}; added {added}")


def entry_point() -> None:
    sys.exit(run_main(main, prog=PROG))


if __name__ == "__main__":
    entry_point()
