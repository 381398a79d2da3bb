"""``hydranet-demo``: synthetic camera -> hydranet_node -> evaluator, over real ROS 2 topics.

Starts the three nodes as separate processes in their own namespace, lets the camera show
held-out frames (streets training never saw), waits until the evaluator has scored
``--frames`` of them, then prints the node's speed and the measured accuracy and writes
``OUT/metrics.json``, a montage per sampled frame in ``OUT/montages/`` and ``OUT/demo.gif``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

from tqdm import tqdm

from ..errors import HydraNetError
from ..metrics import format_summary
from ..ros.processes import start, stop
from .common import (add_engine_arguments, description, fresh_folder,
                     node_engine_parameters, positive, run_main, whole_number)

PROG = "hydranet-demo"
NAMESPACE = "/hydranet_demo"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=PROG, description=description(__doc__),
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--frames", type=int, default=50, help="held-out frames to score")
    parser.add_argument("--out", type=Path, default=Path("demo_out"))
    parser.add_argument("--weights", default="synthetic", help="checkpoint or preset name")
    add_engine_arguments(parser)
    parser.add_argument("--rate", type=positive, default=3.0, help="camera frames per second")
    parser.add_argument("--size", default="320x240", help="camera WIDTHxHEIGHT")
    parser.add_argument("--frame-step", type=int, default=1, help="score every n-th "
                        "held-out frame (25 per street: a step of 8 covers 4 streets in 12 frames)")
    parser.add_argument("--montage-every", type=whole_number(1), default=5)
    parser.add_argument("--timeout", type=positive, default=600.0, help="seconds before giving up")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    parser.add_argument("--min-miou", type=float, help="exit 1 if mIoU is lower")
    parser.add_argument("--max-abs-rel", type=float, help="exit 1 if depth AbsRel is higher")
    parser.add_argument("--max-normal-deg", type=float,
                        help="exit 1 if the mean normal angle error is higher")
    return parser.parse_args(argv)


def wait_for_scores(processes: dict, summary_file: Path, frames: int, timeout: float) -> float:
    """Follow the evaluator (a progress bar with the live metrics) until it writes its
    summary; returns the rate at which frames were scored (frames/s, end to end)."""
    import rclpy
    from rclpy.signals import SignalHandlerOptions
    from std_msgs.msg import String

    rclpy.init(signal_handler_options=SignalHandlerOptions.NO)  # signals: run_main's
    node = rclpy.create_node("hydranet_demo_progress", namespace=NAMESPACE)
    bar = tqdm(total=frames, unit="frame", desc="scoring held-out frames")
    latest = {"frames": 0}

    def on_summary(msg: String) -> None:
        summary = json.loads(msg.data)
        if latest["frames"] == 0:
            latest["first"] = time.monotonic()
        latest["last"] = time.monotonic()
        bar.update(summary["frames"] - latest["frames"])
        bar.set_postfix(mIoU=f"{summary['miou']:.3f}", AbsRel=f"{summary['abs_rel']:.3f}",
                        normals=f"{summary['normal_mean_deg']:.1f}deg")
        latest["frames"] = summary["frames"]
    node.create_subscription(String, "evaluation/summary", on_summary, 10)
    deadline = time.monotonic() + timeout
    try:
        while not summary_file.exists():
            rclpy.spin_once(node, timeout_sec=0.2)
            for name, proc in processes.items():
                if proc.poll() is not None and not (name == "evaluator" and summary_file.exists()):
                    raise HydraNetError(f"{name} stopped early (exit code {proc.returncode}); "
                                        f"see its log in the output folder")
            if time.monotonic() > deadline:
                raise HydraNetError(f"no result after {timeout:.0f} s "
                                    f"({latest['frames']} of {frames} frames scored)")
    finally:
        bar.close()
        node.destroy_node()
        rclpy.try_shutdown()
    if latest["frames"] > 1:
        return (latest["frames"] - 1) / (latest["last"] - latest["first"])
    return float("nan")


def write_gif(montages: Path, target: Path) -> bool:
    from PIL import Image

    frames = [Image.open(p).convert("RGB") for p in sorted(montages.glob("frame_*.png"))]
    if not frames:
        return False
    frames = [f.resize((f.width // 2, f.height // 2)) for f in frames]
    frames[0].save(target, save_all=True, append_images=frames[1:], duration=600, loop=0)
    return True


def report(summary: dict, scored_per_s: float) -> str:
    node = summary.get("node", {})
    lines = [
        f"end to end: {summary['frames']} held-out frames scored at {scored_per_s:.2f} frames/s "
        "(the camera's rate bounds it)",
        f"hydranet_node: {node.get('processed rate (Hz)', '?')} frames/s processed (last second), inference "
        f"p50 {node.get('inference time p50 (ms)', '?')} ms, latency receipt->publish p50 "
        f"{node.get('latency receipt to publish p50 (ms)', '?')} ms, stamp->publish p50 "
        f"{node.get('latency stamp to publish p50 (ms)', '?')} ms, device {node.get('device', '?')}",
        format_summary({k: (float("nan") if v is None else v) for k, v in summary.items()}),
        "per-class IoU: " + ", ".join(f"{name} {value:.3f}" for name, value in
                                      summary["per_class_iou"].items() if value is not None),
    ]
    return "\n".join(lines)


def check(summary: dict, args: argparse.Namespace) -> list[str]:
    failures = []
    if args.min_miou is not None and not summary["miou"] >= args.min_miou:
        failures.append(f"mIoU {summary['miou']:.3f} < {args.min_miou}")
    if args.max_abs_rel is not None and not summary["abs_rel"] <= args.max_abs_rel:
        failures.append(f"AbsRel {summary['abs_rel']:.3f} > {args.max_abs_rel}")
    if args.max_normal_deg is not None and not summary["normal_mean_deg"] <= args.max_normal_deg:
        failures.append(f"normal error {summary['normal_mean_deg']:.1f} > {args.max_normal_deg}")
    return failures


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.frames < 1 or args.frame_step < 1:
        raise HydraNetError("--frames and --frame-step must be at least 1")
    try:
        width, height = (int(v) for v in args.size.lower().split("x"))
    except ValueError:
        raise HydraNetError(f"--size must be WIDTHxHEIGHT, got '{args.size}'") from None
    fresh_folder(args.out, args.overwrite, ("montages", "logs"), ("metrics.json", "demo.gif"))
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    out = args.out.resolve()
    summary_file = out / "metrics.json"
    processes: dict = {}
    try:  # from the first child on: a Ctrl-C at any point stops every child started
        # depth 5: the evaluator must get every frame; large samples over UDP may need
        # retransmitting after the next one is published
        processes["hydranet_node"] = start(
            "hydranet_node", "hydranet_ros.ros.node",
            {"weights": args.weights, **node_engine_parameters(args), "output_depth": 5},
            out / "logs", NAMESPACE)
        processes["evaluator"] = start(
            "evaluator", "hydranet_ros.ros.evaluator",
            {"frames": args.frames, "output_json": summary_file,
             "montage_dir": out / "montages", "montage_every": args.montage_every},
            out / "logs", NAMESPACE)
        processes["synthetic_camera"] = start(
            "synthetic_camera", "hydranet_ros.ros.synthetic_camera",
            {"held_out": "true", "held_out_step": args.frame_step, "rate": args.rate,
             "width": width, "height": height}, out / "logs", NAMESPACE)
        scored_per_s = wait_for_scores(processes, summary_file, args.frames, args.timeout)
    finally:
        stop(processes)
    summary = json.loads(summary_file.read_text())
    summary["scored_frames_per_s"] = scored_per_s if math.isfinite(scored_per_s) else None
    summary_file.write_text(json.dumps(summary, indent=2) + "\n")
    print(report(summary, scored_per_s))
    if write_gif(out / "montages", out / "demo.gif"):
        print(f"{PROG}: montages in {out / 'montages'}, animation {out / 'demo.gif'}")
    failures = check(summary, args)
    for failure in failures:
        print(f"{PROG}: below target: {failure}", file=sys.stderr)
    return 1 if failures else 0


def entry_point() -> None:
    sys.exit(run_main(main, prog=PROG))


if __name__ == "__main__":
    entry_point()
