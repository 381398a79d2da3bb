"""hydranet-bag throughput: frames per second annotating a 640x480 recording.

Writes a bag of held-out synthetic frames (with the tests' bag writer), then times
``hydranet-bag`` on it with the default outputs (labels, depth, normals, points) and the
automatic backend, model loading and one-time export excluded (a first short run warms the
cache)."""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "test"))

from test_bag import frames, write_bag  # noqa: E402

from hydranet_ros.ros.bag import BagAnnotator, BagRequest  # noqa: E402
from hydranet_ros.predictor import Predictor  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=40)
    parser.add_argument("--storage", default="mcap", choices=("mcap", "sqlite3"))
    parser.add_argument("--weights", default="synthetic")
    parser.add_argument("--backend", default="auto")
    args = parser.parse_args()
    predictor = Predictor.from_weights(args.weights, backend=args.backend, device="cpu")
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / "in"
        write_bag(source, args.storage, frames(args.frames, 640, 480))
        warm = BagRequest(source, Path(tmp) / "warm", "/cam/image_raw", end_s=0.05)
        BagAnnotator(warm, predictor).run()
        started = time.perf_counter()
        result = BagAnnotator(BagRequest(source, Path(tmp) / "out", "/cam/image_raw"),
                              predictor).run()
        seconds = time.perf_counter() - started
        size = sum(f.stat().st_size for f in (Path(tmp) / "out").iterdir())
    print(f"{result.frames} frames of 640x480 annotated ({predictor.engine.describe()}, "
          f"{args.storage}): {seconds:.1f} s, {result.frames / seconds:.2f} frames/s; "
          f"output bag {size / 2**20:.0f} MiB")


if __name__ == "__main__":
    main()
