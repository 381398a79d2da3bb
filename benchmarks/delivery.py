"""What a subscriber in another process receives from hydranet_node, and when.

    .venv/bin/python benchmarks/delivery.py [--rates 2,5] [--frames 60] [--profile both]

synthetic_camera (640x480, held-out streets), hydranet_node (bundled weights, automatic
backend) and this script's consumer run as three processes; the consumer subscribes to every
output twice, reliable and best-effort (depth 5), with Fast DDS's default settings. Per rate,
and with the node's large-data transport profile on (the default) and off (``--profile
both``), it prints per output the share of the frames the node processed that each
subscriber received and the stamp-to-receipt latency (p50 and p90 at the subscriber's DDS
reader; ``cb p50``: when this Python consumer's callback ran), next to the node's own
stamp-to-publish p50. Writes delivery_out/delivery.json and delivery_out/delivery.png.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from tqdm import tqdm

os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")

from hydranet_ros.cli.bench import machine  # noqa: E402
from hydranet_ros.ros.delivery_benchmark import (format_delivery, measure_delivery,  # noqa: E402
                                                 write_delivery_chart)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rates", default="2,5", help="camera rates (Hz), comma-separated")
    parser.add_argument("--frames", type=int, default=60, help="frames the camera publishes per run")
    parser.add_argument("--size", default="480x640", help="HEIGHTxWIDTH")
    parser.add_argument("--weights", default="synthetic")
    parser.add_argument("--backend", default="auto")
    parser.add_argument("--profile", default="on", choices=("on", "off", "both"),
                        help="the node's and camera's Fast DDS large-data profile")
    parser.add_argument("--outputs", default="", help="subscribe only to these outputs, "
                        "comma-separated (e.g. labels,confidence,points: what Nav2's semantic "
                        "segmentation layer takes); default: all")
    parser.add_argument("--reliabilities", default="reliable,best_effort",
                        help="one subscriber per reliability")
    parser.add_argument("--qos-depth", type=int, default=5, help="history depth of the "
                        "subscriptions (the semantic segmentation layer: 50)")
    parser.add_argument("--out", type=Path, default=Path("delivery_out"))
    args = parser.parse_args()
    height, width = (int(v) for v in args.size.split("x"))
    profiles = {"on": [True], "off": [False], "both": [False, True]}[args.profile]
    args.out.mkdir(parents=True, exist_ok=True)
    print(f"{machine()}; weights {args.weights}, backend {args.backend}", file=sys.stderr)
    runs = []
    for profile in profiles:
        for rate in (float(r) for r in args.rates.split(",")):
            with tqdm(total=args.frames, unit="frame", file=sys.stderr,
                      desc=f"{rate:g} Hz, profile {'on' if profile else 'off'}") as bar:
                def progress(n: int) -> None:
                    if n != bar.n:
                        bar.update(n - bar.n)
                run = measure_delivery(
                    args.weights, rate, args.frames, (height, width), args.backend,
                    dds_profile=profile, outputs=tuple(filter(None, args.outputs.split(","))),
                    reliabilities=tuple(args.reliabilities.split(",")),
                    qos_depth=args.qos_depth, progress=progress)
            runs.append(run)
            print(format_delivery(run) + "\n")
    (args.out / "delivery.json").write_text(json.dumps(
        {"machine": machine(), "weights": args.weights, "runs": runs}, indent=2) + "\n")
    charted = write_delivery_chart(runs, args.out / "delivery.png",
                                   f"hydranet_node outputs received in another process, "
                                   f"{width}x{height}")
    print(f"wrote {args.out / 'delivery.json'}" + (f" and {args.out / 'delivery.png'}"
                                                   if charted else ""), file=sys.stderr)


if __name__ == "__main__":
    main()
