"""What the separable max-pool (``torch_engine.SeparableMaxPool``) buys on a GPU.

    python benchmarks/cuda_maxpool.py [--runs 50]

The chained residual pooling of Light-Weight RefineNet runs 5x5 stride-1 max-pools on 256
channels at every decoder level; on an H200 they were about half of the network's GPU time.
Prints, in fp16 channels-last as the CUDA engine runs them: each pool of the network on its
own (5x5 against 1x5 then 5x1, CUDA events, median of ``--runs``), then the engine (fp16,
CUDA graphs) with and without the separable pools, measured in turns in this run: the
network at 640x480 and 1280x720 and 8 cameras at 640x480 through ``engine.predict``. Needs a
CUDA device.
"""

from __future__ import annotations

import argparse
import statistics
import sys

import torch
import torch.nn.functional as F
from torch import nn

from hydranet_ros.benchmark import bench_image, timings
from hydranet_ros.engines.torch_engine import SeparableMaxPool, TorchEngine
from hydranet_ros.model import HydraNet
from hydranet_ros.postprocess import PARTS
from hydranet_ros.presets import preset_for_model


def pool_shapes(model: nn.Module, size: tuple[int, int], batch: int) -> list[tuple[int, ...]]:
    """The input shape of every max-pool call of one forward pass."""
    shapes: list[tuple[int, ...]] = []
    hooks = [m.register_forward_pre_hook(lambda _m, args: shapes.append(tuple(args[0].shape)))
             for m in model.modules() if isinstance(m, (nn.MaxPool2d, SeparableMaxPool))]
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


def whole_pools(engine: TorchEngine) -> TorchEngine:
    """The engine with its separable pools back to 5x5 ones (before its first frame)."""
    for module in list(engine.model.modules()):
        for name, child in module.named_children():
            if isinstance(child, SeparableMaxPool):
                setattr(module, name, nn.MaxPool2d(child.kernel, 1, child.padding))
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
    print("each max-pool of one forward pass, ms (median of CUDA events), 5x5 | 1x5 then 5x1:")
    for size, batch in (((480, 640), 1), ((480, 640), 8), ((720, 1280), 1)):
        total = [0.0, 0.0]
        for shape in pool_shapes(model, size, batch):
            x = torch.randn(shape, device=device, dtype=torch.float16) \
                .contiguous(memory_format=torch.channels_last)
            whole = event_ms(lambda: F.max_pool2d(x, 5, 1, 2), args.runs)
            split = event_ms(lambda: F.max_pool2d(F.max_pool2d(x, (1, 5), 1, (0, 2)),
                                                  (5, 1), 1, (2, 0)), args.runs)
            total[0] += whole
            total[1] += split
        print(f"  {size[1]}x{size[0]}, batch {batch}: all pools {total[0]:.2f} | {total[1]:.2f}")
    preset = preset_for_model(40, 3)
    engines = {"separable": TorchEngine(model, preset, device, "fp16"),
               "5x5": whole_pools(TorchEngine(model, preset, device, "fp16"))}
    cases = {"network 640x480": lambda e: e.infer(bench_image((480, 640))[None]),
             "network 1280x720": lambda e: e.infer(bench_image((720, 1280))[None])}
    cameras = [bench_image((480, 640), seed) for seed in range(8)]
    cases["8 cameras 640x480 (frames/s)"] = lambda e: e.predict(cameras, (480, 640), PARTS)
    print("engine, torch fp16 with CUDA graphs, ms (median; in turns): separable | 5x5")
    for name, case in cases.items():
        medians = {key: [] for key in engines}
        for _ in range(3):
            for key, engine in engines.items():
                medians[key].append(statistics.median(timings(lambda: case(engine), args.runs)))
        sep, whole = (statistics.median(medians[k]) * 1e3 for k in ("separable", "5x5"))
        if name.startswith("8 cameras"):
            print(f"  {name}: {8e3 / sep:.0f} | {8e3 / whole:.0f}")
        else:
            print(f"  {name}: {sep:.2f} | {whole:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
