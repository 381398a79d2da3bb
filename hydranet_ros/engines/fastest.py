"""Precision ``auto``: each precision timed on the first frame, the fastest kept.

Which precision of the CUDA engine is fastest depends on the GPU and on the frame: on an
H200 with every part at 640x480, fp32 (cuDNN's TF32 convolutions) took 2.1 ms and fp16 and
bf16 2.4 ms, while at 1280x720 fp16 and bf16 took 4.3 ms and fp32 5.1 ms (``hydranet-bench
--device cuda``). So ``auto`` does not guess: the engine is built in each precision, the
first call (the node's first frame, with the outputs it wants) runs on every one of them,
warm-up first (graph capture, cuDNN's algorithm search, the max-pool methods), then a few
rounds in turns (each round calls every candidate once, so that a slow spell of the machine
falls on all alike), and the one with the lowest median serves that call and every later
one; the others are released. Every candidate passes the same accuracy guards in the tests
(labels, depth and normals against the eager fp32 model), so speed alone decides.

The choice is made once, for the first frame's size: a robot's cameras keep theirs. Asking
for a precision (``precision: fp16``) skips the measurement. OpenVINO on a CPU with bf16 is
measured too (bf16 against fp32), in fewer rounds, its frames taking far longer.
"""

from __future__ import annotations

import gc
import statistics
import time
import traceback
from collections.abc import Callable

from .base import Engine, Log, Result, RoutingEngine

#: Calls of each candidate before the timed rounds: the first captures the frame's graph.
WARMUP_CALLS = 2
#: Timed rounds, each calling every candidate once.
ROUNDS = 10
#: On a CPU: bf16 and fp32 at 640x480 add about 1 s to the first frame on two cores.
CPU_ROUNDS = 3

class FastestEngine(RoutingEngine):
    """Candidate engines of one backend in several precisions; on the first call the
    fastest at it becomes the engine every call goes to."""

    def __init__(self, candidates: list[Engine], log: Log | None = None,
                 warn: Log | None = None, rounds: int = ROUNDS) -> None:
        if not candidates:
            raise ValueError("FastestEngine needs at least one candidate engine")
        first = candidates[0]
        super().__init__(first.preset, first.num_classes, first.num_tasks)
        self.candidates = list(candidates)
        self.rounds = rounds
        self._log = log or (lambda _: None)
        self._warn = warn or self._log
        self.chosen: Engine | None = None
        #: "backend precision" -> median seconds of the first call, once measured
        self.timings: dict[str, float] = {}

    # -- what the engine is -----------------------------------------------------------------

    @property
    def backend(self) -> str:
        return self.candidates[0].backend

    @property
    def precision(self) -> str:
        return self.chosen.precision if self.chosen is not None else "auto"

    @property
    def device(self) -> str:
        return self.candidates[0].device

    @property
    def outputs_on_device(self) -> bool:
        return self.candidates[0].outputs_on_device

    def describe(self) -> str:
        if self.chosen is None:
            backends = {engine.backend for engine in self.candidates}
            names = ", ".join(engine.precision if len(backends) == 1 else _name(engine)
                              for engine in self.candidates)
            return f"{'/'.join(sorted(backends))} on {self.device}, precision measured on the " \
                   f"first frame ({names})"
        return f"{self.chosen.describe()} ({self.measured()})"

    def ranked(self) -> str:
        """The first call's median per candidate, fastest first: 'torch fp32 2.10 ms, ...'."""
        ranked = sorted(self.timings.items(), key=lambda item: item[1])
        return ", ".join(f"{name} {seconds * 1e3:.2f} ms" for name, seconds in ranked)

    def measured(self) -> str:
        return f"measured fastest on the first frame: {self.ranked()}"

    def __getattr__(self, name: str):
        # anything else an engine offers (a torch engine's model, graphs) is the chosen one's
        if name.startswith("_") or name in ("candidates", "chosen"):
            raise AttributeError(name)
        return getattr(self.chosen or self.candidates[0], name)

    # -- the calls --------------------------------------------------------------------------

    def _call(self, call: Callable[[Engine], Result]) -> Result:
        if self.chosen is None:
            self.chosen = self._choose(call)
            self.candidates = [self.chosen]  # the others' models and graphs go
            release_cached_memory(self.chosen.device)
            self._log(f"inference precision: {self.chosen.describe()} ({self.measured()})")
        return call(self.chosen)

    def _choose(self, call: Callable[[Engine], object]) -> Engine:
        """Time ``call`` on every candidate (warm-up, then rounds in turns); the fastest. A
        candidate that fails is dropped with a warning, and if all fail the first one's error
        is raised."""
        working: list[Engine] = []
        first_error: Exception | None = None
        for engine in self.candidates:
            try:
                for _ in range(WARMUP_CALLS):
                    call(engine)
            except Exception as exc:  # noqa: BLE001  one precision failing must not stop the rest
                first_error = first_error or exc
                # the failed call's frames would keep its tensors (and the engine) alive as long
                # as the error is kept; the traceback keeps its lines
                traceback.clear_frames(exc.__traceback__)
                release_cached_memory(engine.device)  # what the failed call held, after OOM say
                self._warn(f"{engine.describe()} not used: it failed on the first frame: "
                           f"{type(exc).__name__}: {exc}".splitlines()[0])
                continue
            working.append(engine)
        if not working:
            assert first_error is not None
            raise first_error
        seconds: dict[int, list[float]] = {id(engine): [] for engine in working}
        for _ in range(self.rounds):
            for engine in working:
                started = time.perf_counter()
                call(engine)
                seconds[id(engine)].append(time.perf_counter() - started)
        self.timings = {_name(engine): statistics.median(seconds[id(engine)])
                        for engine in working}
        return min(working, key=lambda engine: self.timings[_name(engine)])


def measuring_rounds(device) -> int:
    """Timed rounds for candidates on ``device`` (a torch.device)."""
    return ROUNDS if device.type == "cuda" else CPU_ROUNDS


def _name(engine: Engine) -> str:
    return f"{engine.backend} {engine.precision}"


def release_cached_memory(device: str) -> None:
    """Free what released candidates held, at once: an engine and its frame plans refer to
    each other (a plan's body is a closure over its engine), so dropping the last outside
    reference leaves a cycle that only the garbage collector frees, and until then a CUDA
    engine's weights, static buffers and graph pools stay allocated. Then give the memory the
    GPU's caching allocator kept back to the GPU."""
    gc.collect()
    if device.startswith("cuda"):
        import torch
        torch.cuda.empty_cache()
