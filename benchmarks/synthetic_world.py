"""Rendering speed of the synthetic world: frames per second with one process and with one
process per core (how the training data loader and a data-generation job would use them).

    .venv/bin/python benchmarks/synthetic_world.py [--width 320 --height 240 --frames 200]
"""

from __future__ import annotations

import argparse
import os
import time
from concurrent.futures import ProcessPoolExecutor

from hydranet_ros.synthetic.render import SyntheticWorld


def render_many(args: tuple[int, int, int, int]) -> int:
    width, height, first, count = args
    world = SyntheticWorld(width, height)
    for k in range(first, first + count):
        world.frame(k // 100, k % 100)
    return count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--width", type=int, default=320)
    parser.add_argument("--height", type=int, default=240)
    parser.add_argument("--frames", type=int, default=200)
    args = parser.parse_args()
    render_many((args.width, args.height, 0, 5))  # warm-up (caches, imports)
    cores = os.cpu_count() or 1
    print(f"synthetic world at {args.width}x{args.height}, {args.frames} frames, {cores} CPUs")
    for workers in sorted({1, cores}):
        share = args.frames // workers
        jobs = [(args.width, args.height, 1000 + w * share, share) for w in range(workers)]
        started = time.perf_counter()
        if workers == 1:
            done = render_many(jobs[0])
        else:
            with ProcessPoolExecutor(workers) as pool:
                done = sum(pool.map(render_many, jobs))
        seconds = time.perf_counter() - started
        print(f"{workers} process(es): {done / seconds:6.1f} frames/s "
              f"({seconds / done * 1e3:.1f} ms per frame per process x {workers})")


if __name__ == "__main__":
    main()
