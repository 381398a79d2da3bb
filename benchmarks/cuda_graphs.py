"""What whole-frame CUDA graphs and converted weights buy on a GPU: each CUDA precision of the
torch backend run eagerly and as graphs, for the network alone (``engine.infer``), every part
at full resolution (``engine.predict``), and every node output (``engine.outputs``, what the
node runs per frame), with the reference backend measured in the same run.

    python benchmarks/cuda_graphs.py [--size 480x640] [--runs 50] [--out cuda_graphs.json]
                                     [--profile]

Needs a CUDA device; prints a table (median and p90 in ms) and writes JSON. ``--profile`` then
shows where the time of fp16 graphs goes, kernel by kernel: a batch of 8 cameras through
``engine.predict`` at the size given, and the network alone at 1280x720 (the two cases furthest
from their goals in the last GPU run).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

from hydranet_ros.benchmark import bench_image, timings
from hydranet_ros.engines import build_engine
from hydranet_ros.engines.torch_engine import TorchEngine
from hydranet_ros.geometry import Intrinsics
from hydranet_ros.model import HydraNet
from hydranet_ros.outputs import OUTPUTS, OutputSettings
from hydranet_ros.postprocess import PARTS
from hydranet_ros.presets import preset_for_model


def summary(seconds: list[float]) -> dict:
    ms = np.asarray(seconds) * 1e3
    return {"median": round(float(np.median(ms)), 2), "p90": round(float(np.percentile(ms, 90)), 2)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", default="480x640", help="HEIGHTxWIDTH")
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--out", type=Path, default=Path("cuda_graphs.json"))
    parser.add_argument("--profile", action="store_true",
                        help="also print the kernels fp16 graphs spend their time in")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("cuda_graphs.py: no CUDA device", file=sys.stderr)
        return 1
    height, width = (int(v) for v in args.size.split("x"))
    torch.manual_seed(0)
    model = HydraNet(40, 3).eval()
    preset = preset_for_model(40, 3)
    device = torch.device("cuda")
    image = bench_image((height, width))
    wanted = [{spec.name for spec in OUTPUTS}]
    intr = [Intrinsics(0.8 * width, 0.8 * width, width / 2, height / 2, width, height)]
    settings = OutputSettings(max_depth=1000.0)
    rows = []
    engines = [("reference fp32", build_engine(model, preset, "reference", device))]
    for precision in ("fp32", "fp16", "bf16"):
        for graphs in (False, True):
            name = f"torch {precision} {'graphs' if graphs else 'eager'}"
            engines.append((name, TorchEngine(model, preset, device, precision,
                                              cuda_graphs=graphs)))
    for name, engine in engines:
        row = {"engine": name,
               "network": summary(timings(lambda: engine.infer(image[None]), args.runs)),
               "predict": summary(timings(lambda: engine.predict([image], (height, width), PARTS),
                                          args.runs))}
        if engine.outputs_on_device:
            row["outputs"] = summary(timings(lambda: engine.outputs(
                [image], (height, width), wanted, settings, intr), args.runs))
            for n in (8, 16):
                images = [bench_image((height, width), seed) for seed in range(n)]
                seconds = timings(lambda: engine.predict(images, (height, width), PARTS),
                                  max(5, args.runs // 5))
                row[f"predict_{n}_cameras_frames_per_s"] = round(n / statistics.median(seconds), 1)
            row["graphs_captured"] = engine.graphs.captured()
        rows.append(row)
        cells = [f"{row[k]['median']:6.2f} / {row[k]['p90']:6.2f}" if k in row else " " * 15
                 for k in ("network", "predict", "outputs")]
        cams = " ".join(f"{row.get(f'predict_{n}_cameras_frames_per_s', '-')!s:>7}" for n in (8, 16))
        print(f"{name:<20} {' | '.join(cells)} | {cams}", flush=True)
    report = {"gpu": torch.cuda.get_device_name(), "torch": torch.__version__,
              "size": f"{width}x{height}", "model": "40 classes, 3 tasks (seeded)",
              "columns": "median / p90 ms: network | predict (every part) | outputs (every "
                         "node output) | frames/s of 8 and 16 cameras batched", "rows": rows}
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    if args.profile:
        engine = dict(engines)["torch fp16 graphs"]
        cameras = [bench_image((height, width), seed) for seed in range(8)]
        print(kernel_profile(f"8 cameras at {width}x{height}, engine.predict, every part",
                             lambda: engine.predict(cameras, (height, width), PARTS)))
        large = bench_image((720, 1280))
        print(kernel_profile("the network alone at 1280x720, engine.infer",
                             lambda: engine.infer(large[None])))
    return 0


def kernel_profile(title: str, call, runs: int = 10, rows: int = 15) -> str:
    """Where ``call``'s time goes on the GPU: its wall time against the device time its
    kernels and copies take, and the kernels that take most of it (once warmed up, so that
    plans are made and graphs captured outside the profile)."""
    from torch.profiler import ProfilerActivity, profile
    for _ in range(3):
        call()
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        start = time.perf_counter()
        for _ in range(runs):
            call()
        wall_ms = (time.perf_counter() - start) * 1e3 / runs
    events = prof.key_averages()
    device_ms = sum(e.self_device_time_total for e in events) / 1e3 / runs
    return (f"\n{title}: {wall_ms:.2f} ms per call (under the profiler), device time "
            f"{device_ms:.2f} ms per call; kernels by device time over {runs} calls:\n"
            + events.table(sort_by="self_device_time_total", row_limit=rows))


if __name__ == "__main__":
    sys.exit(main())
