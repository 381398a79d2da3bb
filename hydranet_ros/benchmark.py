"""Measuring the engines: latency per backend, precision and resolution, speed-up over the
plain eager fp32 model measured in the same run, peak memory, and multi-camera throughput.

Used by ``hydranet-bench``; ROS-free (the node's end-to-end measurement is in
``ros/node_benchmark.py``).
"""

from __future__ import annotations

import importlib.util
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch

from .engines import Engine, EngineError, build_engine
from .engines.max_pool import chosen_methods
from .engines.openvino_engine import cpu_supports_bf16
from .engines.quantize import SYNTHETIC
from .model import HydraNet
from .postprocess import PARTS
from .presets import Preset
from .predictor import Predictor

#: (height, width): VGA, KITTI, 720p.
SIZES = ((480, 640), (370, 1226), (720, 1280))
BASELINE = ("reference", "fp32")


@dataclass
class Row:
    backend: str
    precision: str
    device: str
    size: str  # WxH
    median_ms: float
    p90_ms: float
    fps: float
    speedup: float  # over the reference (eager fp32, NCHW, no folding) at this size
    peak_memory_mb: float
    predict_ms: float  # median with the full-resolution post-processing (labels, depth, normals)
    runs: int
    #: torch engines: (max-pool, input shape) pairs per method the pools chose (max_pool.py)
    pools: dict[str, int] = field(default_factory=dict)


def cases(device: torch.device) -> list[tuple[str, str]]:
    """Every backend and precision worth measuring on this device, the baseline first."""
    found = [BASELINE]
    if device.type == "cuda":
        found += [("torch", "fp32"), ("torch", "fp16"), ("torch", "bf16"), ("onnxruntime", "fp32")]
        return found
    found += [("torch", "fp32"), ("openvino", "fp32")]
    if cpu_supports_bf16():
        found.append(("openvino", "bf16"))
    if importlib.util.find_spec("nncf") is not None:
        found.append(("openvino", "int8"))
    return found + [("onnxruntime", "fp32")]


def timings(call, runs: int, min_runs: int = 3, budget_s: float = 20.0) -> list[float]:
    """Seconds per call after one warm-up: ``runs`` calls, fewer (not below ``min_runs``)
    when they would take longer than ``budget_s``; slow baselines must not eat the budget."""
    call()
    seconds: list[float] = []
    started = time.perf_counter()
    while len(seconds) < runs and (len(seconds) < min_runs
                                   or time.perf_counter() - started < budget_s):
        t = time.perf_counter()
        call()
        seconds.append(time.perf_counter() - t)
    return seconds


class PeakMemory:
    """Peak memory of a block: resident set (Linux's VmHWM, reset on entry) or CUDA's."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.peak_mb = float("nan")

    def __enter__(self) -> "PeakMemory":
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        else:
            try:
                Path("/proc/self/clear_refs").write_text("5")
            except OSError:
                pass
        return self

    def __exit__(self, *exc) -> None:
        if self.device.type == "cuda":
            self.peak_mb = torch.cuda.max_memory_allocated(self.device) / 2**20
            return
        try:
            for line in Path("/proc/self/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    self.peak_mb = int(line.split()[1]) / 1024
        except OSError:
            pass


def bench_image(size: tuple[int, int], seed: int = 0) -> np.ndarray:
    """A smooth random picture (uint8 RGB)."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (size[0] // 16 + 1, size[1] // 16 + 1, 3), dtype=np.uint8)
    return cv2.resize(small, (size[1], size[0]), interpolation=cv2.INTER_LINEAR)


def measure(engine: Engine, size: tuple[int, int], runs: int) -> tuple[list[float], list[float], float]:
    """Latencies of the network alone (uint8 in, raw maps out) and with the full-resolution
    post-processing, and the peak memory meanwhile."""
    image = bench_image(size)
    batch = image[None]
    device = torch.device(engine.device)
    with PeakMemory(device) as memory:
        network = timings(lambda: engine.infer(batch), runs)
        predict = timings(lambda: engine.predict([image], size, PARTS), max(3, runs // 2))
    return network, predict, memory.peak_mb


def bench_engines(model: HydraNet, preset: Preset, device: torch.device,
                  sizes=SIZES, selected: list[tuple[str, str]] | None = None, runs: int = 10,
                  progress=None, warn=print, calibration: str = SYNTHETIC) -> list[Row]:
    """One row per backend x precision x size that could run here (int8 calibrated on
    ``calibration``: speed does not depend on which frames)."""
    rows: list[Row] = []
    for size in sizes:
        baseline_ms = None
        for backend, precision in selected or cases(device):
            label = f"{backend} {precision} {size[1]}x{size[0]}"
            if progress is not None:
                progress.set_description(label)
            try:
                engine = build_engine(model, preset, backend, device, precision,
                                      calibration=calibration)
                network, predict, peak = measure(engine, size, runs)
            except EngineError as exc:
                warn(f"skipped {label}: {exc}")
                continue
            finally:
                if progress is not None:
                    progress.update(1)
            median = float(np.median(network))
            if (backend, precision) == BASELINE:
                baseline_ms = median * 1e3
            rows.append(Row(backend, precision, str(device), f"{size[1]}x{size[0]}",
                            round(median * 1e3, 1), round(float(np.percentile(network, 90)) * 1e3, 1),
                            round(1 / median, 1),
                            round(baseline_ms / (median * 1e3), 2) if baseline_ms else float("nan"),
                            round(peak, 0), round(float(np.median(predict)) * 1e3, 1), len(network),
                            chosen_methods(engine.model) if hasattr(engine, "model") else {}))
    return rows


def format_pools(rows: list[Row]) -> str:
    """Which max-pool methods the torch engines chose, per row; empty if none chose."""
    lines = [f"  {r.backend} {r.precision} {r.size}: "
             + ", ".join(f"{method} {count}" for method, count in sorted(r.pools.items()))
             for r in rows if r.pools]
    return "max-pool methods the engines measured fastest ((pool, shape) pairs):\n" + \
        "\n".join(lines) if lines else ""


def in_turns(engines: dict[str, Engine], size: tuple[int, int], rounds: int) -> dict[str, dict]:
    """Median latency of each engine, network alone and with the full-resolution
    post-processing, measured in turns (each round calls every engine once), so that the
    machine's slow spells fall on all of them alike: on a shared machine, the fair way to
    measure one engine's time as a share of another's."""
    image = bench_image(size)
    network = {name: [] for name in engines}
    predict = {name: [] for name in engines}
    for engine in engines.values():  # warm-up
        engine.predict([image], size, PARTS)
    for _ in range(rounds):
        for name, engine in engines.items():
            started = time.perf_counter()
            engine.infer(image[None])
            network[name].append(time.perf_counter() - started)
            started = time.perf_counter()
            engine.predict([image], size, PARTS)
            predict[name].append(time.perf_counter() - started)
    return {name: {"network_ms": round(float(np.median(network[name])) * 1e3, 1),
                   "predict_ms": round(float(np.median(predict[name])) * 1e3, 1)}
            for name in engines}


def int8_share(model: HydraNet, preset: Preset, size: tuple[int, int], rounds: int = 30,
               calibration: str = SYNTHETIC) -> dict:
    """OpenVINO int8's latency as a share of OpenVINO bf16's, measured in turns."""
    cpu = torch.device("cpu")
    engines = {precision: build_engine(model, preset, "openvino", cpu, precision,
                                       calibration=calibration) for precision in ("int8", "bf16")}
    medians = in_turns(engines, size, rounds)
    int8, bf16 = medians["int8"], medians["bf16"]
    return {"size": f"{size[1]}x{size[0]}", "rounds": rounds, "int8": int8, "bf16": bf16,
            "network_share": round(int8["network_ms"] / bf16["network_ms"], 3),
            "predict_share": round(int8["predict_ms"] / bf16["predict_ms"], 3)}


def format_int8_share(share: dict) -> str:
    int8, bf16 = share["int8"], share["bf16"]
    return (f"  {share['size']}: network {int8['network_ms']:.1f} / {bf16['network_ms']:.1f} ms "
            f"= {share['network_share'] * 100:.0f} %, with post-processing "
            f"{int8['predict_ms']:.1f} / {bf16['predict_ms']:.1f} ms = "
            f"{share['predict_share'] * 100:.0f} %")


def bench_cameras(engine: Engine, preset: Preset, size: tuple[int, int], counts=(1, 2, 4),
                  runs: int = 5) -> list[dict]:
    """Frames per second when ``n`` cameras' frames run as one batch, through the same
    Predictor.predict_many the node uses (network and full post-processing)."""
    predictor = Predictor(engine, preset)
    results = []
    for n in counts:
        images = [bench_image(size, seed) for seed in range(n)]
        seconds = timings(lambda: predictor.predict_many(images, [None] * n), runs)
        median = float(np.median(seconds))
        results.append({"cameras": n, "batch_ms": round(median * 1e3, 1),
                        "frames_per_s": round(n / median, 1)})
    return results


def accuracy_cost(cases_: list[tuple[str, str]], frames: int = 20,
                  size: tuple[int, int] = (240, 320)) -> dict[str, dict]:
    """What each CPU precision costs in accuracy, with the bundled weights on held-out frames
    of several streets (5 apart), against the eager fp32 reference; int8 calibrated on other
    held-out frames. Keyed 'backend precision'."""
    from .checkpoint import load_model
    from .evaluation import compare_engines, held_out_frame
    from .presets import get_preset
    from .synthetic.render import SyntheticWorld
    from .weights import resolve
    preset = get_preset("synthetic")
    model = load_model(resolve("synthetic"))
    world = SyntheticWorld(size[1], size[0])
    data = [held_out_frame(world, 5 * k) for k in range(frames)]
    cpu = torch.device("cpu")
    engines = {"reference fp32": build_engine(model, preset, "reference", cpu)}
    for backend, precision in cases_:
        if backend == "openvino":
            engines[f"{backend} {precision}"] = build_engine(model, preset, backend, cpu,
                                                             precision, calibration=SYNTHETIC)
    return compare_engines(engines, preset, data, "reference fp32")


def format_accuracy(results: dict[str, dict]) -> str:
    base = results["reference fp32"]
    lines = [f"  {'engine':<16} {'labels = fp32':>13} {'mIoU':>14} {'depth AbsRel':>16} "
             f"{'normals mean':>18}"]
    for name, r in results.items():
        lines.append(f"  {name:<16} {r['labels_agree_with_baseline'] * 100:12.2f}% "
                     f"{r['miou']:7.4f} ({r['miou'] - base['miou']:+.4f}) "
                     f"{r['abs_rel']:7.4f} ({r['abs_rel'] - base['abs_rel']:+.4f}) "
                     f"{r['normal_mean_deg']:6.2f} deg ({r['normal_mean_deg'] - base['normal_mean_deg']:+.2f})")
    return "\n".join(lines)


def format_table(rows: list[Row]) -> str:
    header = ("backend", "precision", "device", "size", "median ms", "p90 ms", "fps",
              "speed-up", "peak MB", "+post ms")
    lines = [header] + [(r.backend, r.precision, r.device, r.size, f"{r.median_ms:.1f}",
                         f"{r.p90_ms:.1f}", f"{r.fps:.1f}", f"{r.speedup:.1f}x",
                         f"{r.peak_memory_mb:.0f}", f"{r.predict_ms:.1f}") for r in rows]
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    text = ["  ".join(cell.ljust(w) for cell, w in zip(line, widths)) for line in lines]
    text.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(text)


def write_chart(rows: list[Row], path: Path, title: str) -> bool:
    """Grouped bars: median latency per backend and precision, one group per size."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    sizes = list(dict.fromkeys(r.size for r in rows))
    labels = list(dict.fromkeys(f"{r.backend} {r.precision}" for r in rows))
    fig, ax = plt.subplots(figsize=(10, 5))
    width = 0.8 / len(labels)
    for i, label in enumerate(labels):
        values = [next((r.median_ms for r in rows if r.size == s
                        and f"{r.backend} {r.precision}" == label), 0.0) for s in sizes]
        bars = ax.bar(np.arange(len(sizes)) + i * width, values, width, label=label)
        speedups = [next((r.speedup for r in rows if r.size == s
                          and f"{r.backend} {r.precision}" == label), float("nan")) for s in sizes]
        ax.bar_label(bars, [f"{s:.1f}x" if s == s and v else "" for s, v in zip(speedups, values)],
                     fontsize=7)
    ax.set_xticks(np.arange(len(sizes)) + 0.4 - width / 2, sizes)
    ax.set_yscale("log")
    ax.set_ylabel("median latency per frame (ms, log scale)")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


def rows_as_dicts(rows: list[Row]) -> list[dict]:
    return [asdict(r) for r in rows]
