"""The max-pool methods (``engines/max_pool.py``) on a GPU: each pool of the network by each
method, then the engine with each method forced and as it measures them itself.

    python benchmarks/cuda_maxpool.py [--runs 50]

The chained residual pooling of Light-Weight RefineNet runs 5x5 stride-1 max-pools on 256
channels at every decoder level; on an H200 they were about half of the network's GPU time
with PyTorch's pool (which on CUDA also writes an int64 index per output). Prints, in fp16
channels-last as the CUDA engine runs them: the sum over one forward pass's pools for each
method (CUDA events, median of ``--runs``), then the engine (fp16, CUDA graphs) with each
method forced and with its own choice, measured in turns in this run: the network at
640x480 and 1280x720 and 8 cameras at 640x480 through ``engine.predict``. Needs a CUDA
device.
"""

from __future__ import annotations

import argparse
import statistics
import sys

import torch
from torch import nn

from hydranet_ros.benchmark import bench_image, timings
from hydranet_ros.engines.max_pool import METHODS, MaxPool, chosen_methods, max_pool
from hydranet_ros.engines.torch_engine import TorchEngine
from hydranet_ros.model import HydraNet
from hydranet_ros.postprocess import PARTS
from hydranet_ros.presets import preset_for_model


def pool_shapes(model: nn.Module, size: tuple[int, int], batch: int) -> list[tuple[int, ...]]:
    """The input shape of every max-pool call of one forward pass."""
    shapes: list[tuple[int, ...]] = []
    hooks = [m.register_forward_pre_hook(lambda _m, args: shapes.append(tuple(args[0].shape)))
             for m in model.modules() if isinstance(m, (nn.MaxPool2d, MaxPool))]
    with torch.inference_mode():
        model(torch.zeros(batch, 3, *size))
    for hook in hooks:
        hook.remove()
    return shapes


def event_ms(call, runs: int) -> float:
    for _ in range(5):
        call()
    times = []
    for _ in range(runs):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        call()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)


def forced(engine: TorchEngine, method: str) -> TorchEngine:
    """The engine with every pool held to one method (before its first frame)."""
    for module in engine.model.modules():
        if isinstance(module, MaxPool):
            module.methods = (method,)
    return engine


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=50)
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("cuda_maxpool.py: no CUDA device", file=sys.stderr)
        return 1
    device = torch.device("cuda")
    torch.manual_seed(0)
    model = HydraNet(40, 3).eval()
    print(f"{torch.cuda.get_device_name()}, torch {torch.__version__}; fp16 channels-last")
    print(f"all max-pools of one forward pass, ms (sum of CUDA event medians): "
          f"{' | '.join(METHODS)}")
    for size, batch in (((480, 640), 1), ((480, 640), 8), ((720, 1280), 1)):
        total = dict.fromkeys(METHODS, 0.0)
        for shape in pool_shapes(model, size, batch):
            x = torch.randn(shape, device=device, dtype=torch.float16) \
                .contiguous(memory_format=torch.channels_last)
            for method in METHODS:
                total[method] += event_ms(lambda m=method: max_pool(x, 5, 2, m), args.runs)
        print(f"  {size[1]}x{size[0]}, batch {batch}: "
              f"{' | '.join(f'{total[m]:.2f}' for m in METHODS)}")
    preset = preset_for_model(40, 3)
    engines = {method: forced(TorchEngine(model, preset, device, "fp16"), method)
               for method in METHODS}
    engines["measured"] = TorchEngine(model, preset, device, "fp16")
    cases = {"network 640x480": lambda e: e.infer(bench_image((480, 640))[None]),
             "network 1280x720": lambda e: e.infer(bench_image((720, 1280))[None])}
    cameras = [bench_image((480, 640), seed) for seed in range(8)]
    cases["8 cameras 640x480 (frames/s)"] = lambda e: e.predict(cameras, (480, 640), PARTS)
    print(f"engine, torch fp16 with CUDA graphs, ms (median; in turns): {' | '.join(engines)}")
    for name, case in cases.items():
        medians = {key: [] for key in engines}
        for _ in range(3):
            for key, engine in engines.items():
                medians[key].append(statistics.median(timings(lambda: case(engine), args.runs)))
        ms = [statistics.median(medians[key]) * 1e3 for key in engines]
        shown = [f"{8e3 / m:.0f}" if name.startswith("8 cameras") else f"{m:.2f}" for m in ms]
        print(f"  {name}: {' | '.join(shown)}")
    print(f"the engine's own choice, (pool, shape) pairs per method: "
          f"{chosen_methods(engines['measured'].model)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
