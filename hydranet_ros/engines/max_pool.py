"""Stride-1 square max-pools (the 5x5 pools of the chained residual pooling) computed, per
input shape, the fastest of three equal ways, as measured on the first input of that shape.

The three give the same values bit for bit, in the input's memory layout: a maximum is
exact, and all of them pad with -inf (``test/test_max_pool.py`` checks NaN, infinities, dtypes
and layouts). The layout matters too: the next convolution's kernel, and so its rounding,
depends on it.

- ``window``: PyTorch's k x k pool. On CUDA, ``max_pool2d`` always computes the int64 index
  of every maximum as well (only the CPU has a kernel without them), so it writes five
  times the bytes of an fp16 result.
- ``separable``: a 1 x k pool, then a k x 1 pool (2k reads per output instead of k
  squared; still with indices on CUDA).
- ``reduction``: the channels-last tensor padded once with -inf, then ``amax`` over an
  unfolded window along the rows and then along the columns; no indices are written.

Which is fastest depends on the device, the dtype and the shape. So ``MaxPool`` times the
three in turns on the first input of each (shape, dtype, device) it meets, outside CUDA graph
capture and tracing, and keeps the fastest for it, as ``cudnn.benchmark`` does for
convolutions.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

METHODS = ("window", "separable", "reduction")
#: Rounds in which each method runs once, timed (after one untimed round); a method's
#: fastest run counts, so a burst of other work on a shared machine hits every method alike.
TIMED_ROUNDS = 5


def max_pool(x: torch.Tensor, kernel: int, padding: int, method: str) -> torch.Tensor:
    """The k x k, stride-1 max-pool of NCHW ``x`` with -inf padding, by ``method``."""
    if method == "window":
        return F.max_pool2d(x, kernel, 1, padding)
    if method == "separable":
        rows = F.max_pool2d(x, (1, kernel), 1, (0, padding))
        return F.max_pool2d(rows, (kernel, 1), 1, (padding, 0))
    if method == "reduction":
        nhwc = x.permute(0, 2, 3, 1)  # a view; contiguous when x is channels-last
        padded = F.pad(nhwc, (0, 0, padding, padding, padding, padding), value=float("-inf"))
        rows = padded.unfold(2, kernel, 1).amax(dim=-1)
        pooled = rows.unfold(1, kernel, 1).amax(dim=-1).permute(0, 3, 1, 2)  # channels-last
        # in the input's layout (see above; a copy only for NCHW inputs, the engines' models
        # are channels-last)
        return pooled if x.is_contiguous(memory_format=torch.channels_last) else \
            pooled.contiguous()
    raise ValueError(f"unknown max-pool method {method!r} (one of {', '.join(METHODS)})")


def _seconds(call: Callable[[], torch.Tensor], device: torch.device) -> float:
    """One run's wall time, the device synchronised before and after."""
    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)
    sync()
    start = time.perf_counter()
    call()
    sync()
    return time.perf_counter() - start


def _may_time(x: torch.Tensor) -> bool:
    """Timing runs extra work and synchronises: never while a CUDA graph is being recorded
    or a trace is being taken (both would keep the extra work)."""
    if torch.jit.is_tracing() or torch.jit.is_scripting():
        return False
    return not (x.is_cuda and torch.cuda.is_current_stream_capturing())


class MaxPool(nn.Module):
    """A square, stride-1 ``nn.MaxPool2d`` that runs each input shape the fastest of
    ``METHODS`` (``chosen`` says which); the values are the pool's."""

    def __init__(self, pool: nn.MaxPool2d, methods: tuple[str, ...] = METHODS,
                 timer: Callable[[Callable[[], torch.Tensor], torch.device], float] = _seconds
                 ) -> None:
        super().__init__()
        self.kernel = _side(pool.kernel_size)
        self.padding = _side(pool.padding)
        self.methods = methods
        self.timer = timer
        self.chosen: dict[tuple, str] = {}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        key = (tuple(int(side) for side in x.shape), x.dtype, x.device)  # traced: tensors
        method = self.chosen.get(key)
        if method is None:
            if not _may_time(x):
                return max_pool(x, self.kernel, self.padding, self.methods[0])
            method = self.chosen[key] = self._fastest(x)
        return max_pool(x, self.kernel, self.padding, method)

    def _fastest(self, x: torch.Tensor) -> str:
        calls = {method: (lambda m=method: max_pool(x, self.kernel, self.padding, m))
                 for method in self.methods}
        for call in calls.values():
            call()
        best = dict.fromkeys(self.methods, float("inf"))
        for _ in range(TIMED_ROUNDS):
            for method, call in calls.items():
                best[method] = min(best[method], self.timer(call, x.device))
        return min(self.methods, key=best.__getitem__)


def _side(value) -> int:
    return value if isinstance(value, int) else value[0]


def poolable(pool: nn.Module) -> bool:
    """A square, stride-1, undilated max-pool returning values only (what ``MaxPool`` is)."""
    def square(value) -> bool:
        return isinstance(value, int) or len(set(value)) == 1
    if not isinstance(pool, nn.MaxPool2d):
        return False
    stride = pool.stride if isinstance(pool.stride, int) else max(pool.stride)
    return (square(pool.kernel_size) and square(pool.padding) and stride == 1
            and pool.dilation in (1, (1, 1)) and not pool.ceil_mode
            and not pool.return_indices)


def measured_max_pools(model: nn.Module, **options) -> nn.Module:
    """``model`` with every square, stride-1 max-pool a ``MaxPool`` (in place)."""
    for module in list(model.modules()):
        for name, child in module.named_children():
            if poolable(child):
                setattr(module, name, MaxPool(child, **options))
    return model


def chosen_methods(model: nn.Module) -> dict[str, int]:
    """How many (pool, shape) pairs run each method: for logs and benchmarks."""
    counts: dict[str, int] = {}
    for module in model.modules():
        if isinstance(module, MaxPool):
            for method in module.chosen.values():
                counts[method] = counts.get(method, 0) + 1
    return counts
