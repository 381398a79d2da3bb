"""What whole-frame CUDA graphs and converted weights buy on a GPU: each CUDA precision of the
torch backend run eagerly and as graphs, for the network alone (``engine.infer``), every part
at full resolution (``engine.predict``), and every node output (``engine.outputs``, what the
node runs per frame), with the reference backend measured in the same run.

    python benchmarks/cuda_graphs.py [--size 480x640] [--runs 50] [--out cuda_graphs.json]

Needs a CUDA device; prints a table (median and p90 in ms) and writes JSON.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
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
    return 0


if __name__ == "__main__":
    sys.exit(main())
