"""hydranet-fleet throughput: frames/s annotating several bags with 1 and 2 Ray workers,
against the single-process hydranet-bag on the same bags and engine.

    .venv/bin/python benchmarks/fleet_throughput.py [--bags 4] [--frames 12] [--size 480x640]

Writes ``--bags`` bags of held-out synthetic frames (MCAP), then annotates all of them:
(1) in this process with hydranet-bag's annotator, one bag after another, the model loaded
once before timing; (2) with hydranet-fleet and one worker; (3) with two workers, each pinned to its own
core. Ray's start-up and the workers' model loading are reported apart from the annotation
(the engine compiles for the frame size on the first frame, inside the timing, in both),
and the annotation time is split into network, outputs (post-processing, views, cloud,
messages), writing and reading (summed over bags).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "test"))

from test_bag import frames, write_bag  # noqa: E402

from hydranet_ros.memory import keep_freed_memory  # noqa: E402
from hydranet_ros.fleet import FleetOptions, Settings, run_fleet, weights_digest  # noqa: E402
from hydranet_ros.predictor import Predictor  # noqa: E402
from hydranet_ros.ros.bag import DEFAULT_OUTPUTS, BagAnnotator, BagRequest  # noqa: E402
from hydranet_ros.weights import resolve  # noqa: E402

PARTS = ("network", "outputs", "write", "read")


def single_process(bags: list[Path], out: Path, settings: Settings) -> tuple[float, int, dict]:
    keep_freed_memory()  # as hydranet-bag does
    predictor = Predictor.from_weights(settings.weights, None, settings.device, settings.backend,
                                       settings.precision, progress=False, log=lambda _: None)
    where = dict.fromkeys(PARTS, 0.0)
    total = 0
    started = time.perf_counter()
    for bag in bags:
        result = BagAnnotator(BagRequest(bag, out / bag.name, "/cam/image_raw"), predictor,
                              warn=lambda _: None).run()
        total += result.frames
        for part in PARTS:
            where[part] += result.seconds[part]
    return time.perf_counter() - started, total, where


def fleet_where(report: dict) -> dict:
    where = dict.fromkeys(PARTS, 0.0)
    for bag in report["annotated"]:
        for part in PARTS:
            where[part] += bag["where"][part]
    return where


def line(label: str, seconds: float, count: int, where: dict, extra: str = "") -> str:
    busy = sum(where.values())
    split = ", ".join(f"{part} {where[part] / busy * 100:.0f} %" for part in PARTS)
    return (f"{label:<34} {count / seconds:6.2f} frames/s ({count} frames in {seconds:.1f} s)"
            f"{extra}; time in the bags: {split}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bags", type=int, default=4)
    parser.add_argument("--frames", type=int, default=20, help="frames per bag")
    parser.add_argument("--size", default="480x640", help="HEIGHTxWIDTH")
    parser.add_argument("--weights", default="synthetic")
    parser.add_argument("--backend", default="auto")
    parser.add_argument("--rounds", type=int, default=3, help="repetitions (the median counts)")
    parser.add_argument("--single", nargs=2, metavar=("BAGS", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.single:
        settings = Settings("/cam/image_raw", None, args.weights, "", None, args.backend,
                            "auto", None, "cpu", DEFAULT_OUTPUTS)
        bags = sorted(Path(args.single[0]).iterdir())
        print(json.dumps(single_process(bags, Path(args.single[1]), settings)))
        return
    height, width = (int(v) for v in args.size.split("x"))
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for i in range(args.bags):
            write_bag(root / "bags" / f"drive_{i}", "mcap", frames(args.frames, width, height))
        bags = sorted((root / "bags").iterdir())
        settings = Settings("/cam/image_raw", None, args.weights,
                            weights_digest(resolve(args.weights)), None, args.backend, "auto",
                            None, "cpu", DEFAULT_OUTPUTS)
        print(f"{args.bags} bags x {args.frames} frames, {width}x{height}, weights "
              f"{args.weights}, backend {args.backend}, outputs {','.join(DEFAULT_OUTPUTS)}, "
              f"{os.cpu_count()} CPUs")
        configs = [("hydranet-bag, one process", None),
                   ("hydranet-fleet, 1 worker", FleetOptions(workers=1)),
                   ("hydranet-fleet, 2 workers pinned", FleetOptions(
                       workers=2, pin_cores=True, threads_per_worker=1))]
        results: dict[str, list] = {label: [] for label, _ in configs}
        for round_ in range(args.rounds):  # interleaved, so that drifts in the machine's
            for label, options in configs:  # speed hit every configuration alike
                out = root / f"{round_}_{label.split(',')[1].strip().replace(' ', '_')}"
                if options is None:  # in a fresh process, as hydranet-bag runs
                    done = subprocess.run([sys.executable, __file__, "--single",
                                           str(root / "bags"), str(out), "--weights",
                                           args.weights, "--backend", args.backend],
                                          capture_output=True, text=True, check=True)
                    seconds, count, where = json.loads(done.stdout.strip().splitlines()[-1])
                    results[label].append((seconds, count, where, None))
                else:
                    report = run_fleet([str(root / "bags")], out, settings, options,
                                       lambda _: None)
                    results[label].append((report["annotate_s"], report["frames"],
                                           fleet_where(report), report))
                shutil.rmtree(out, ignore_errors=True)
        print(f"median of {args.rounds} rounds:")
        base = None
        for label, _ in configs:
            runs = sorted(results[label], key=lambda r: r[1] / r[0])
            seconds, count, where, report = runs[len(runs) // 2]
            rate = count / seconds
            all_rates = ", ".join(f"{r[1] / r[0]:.2f}" for r in results[label])
            extra = f" [rounds: {all_rates}]"
            if base is None:
                base = rate
            else:
                extra += (f", {rate / base * 100 - 100:+.1f} % vs one process; Ray start "
                          f"{report['ray_start_s']:.1f} s, workers ready after "
                          f"{report['worker_setup_s']:.1f} s")
            print(line(label, seconds, count, where, extra))

if __name__ == "__main__":
    main()
