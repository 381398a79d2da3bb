"""Whole frames as CUDA graphs: the per-frame work of a CUDA engine recorded once and replayed.

On a fast GPU the network of a 640x480 frame takes a few milliseconds, and launching its
hundreds of kernels one by one from Python takes as long again. A CUDA graph records every
kernel of a frame (the copy from a pinned staging buffer, normalisation, the network, the
upsampling, argmax, depth and normals, the output images and the point cloud) once and
replays them with one call. A graph works on fixed buffers, so there is one plan per
(image sizes, batch, network size, what is wanted, settings): the images are written into the
plan's pinned staging buffers, the graph is replayed, and all results come back packed in one
device-to-host copy, with one synchronisation per frame.

The same plan runs eagerly (no capture) on a CPU, where no graph exists, or where capture
fails (logged once); the tests run that code on the CPU and compare it with the host path.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Callable, Hashable

import numpy as np
import torch

from ..device_outputs import pack, to_host, unpack
from .base import Log

#: The work of one frame: the plan's device images (uint8 HWC or NHWC), to one dict of
#: named result tensors per image.
Body = Callable[[list[torch.Tensor]], list[dict[str, torch.Tensor]]]
#: Plans kept per engine (each holds its buffers and, on CUDA, its graph's memory).
MAX_PLANS = 16
#: Eager runs before capture: cuDNN picks its algorithms, the caching allocator fills.
WARMUP_RUNS = 2


class FramePlan:
    """Fixed input buffers for one kind of frame, the work done on them, and (on CUDA, once
    captured) the graph that replays that work."""

    def __init__(self, shapes: list[tuple[int, ...]], device: torch.device, body: Body) -> None:
        cuda = device.type == "cuda"
        self.device = device
        self.staging = [torch.empty(shape, dtype=torch.uint8, pin_memory=cuda) for shape in shapes]
        self.inputs = [torch.empty(shape, dtype=torch.uint8, device=device) for shape in shapes]
        self.body = body
        self.graph: torch.cuda.CUDAGraph | None = None
        self.packed: torch.Tensor | None = None
        self.layouts: list[list] = []

    def _step(self) -> tuple[torch.Tensor, list[list]]:
        for device_image, host_image in zip(self.inputs, self.staging):
            device_image.copy_(host_image, non_blocking=True)
        return pack(self.body(self.inputs))

    def stage(self, images: list[np.ndarray]) -> None:
        for host_image, image in zip(self.staging, images):
            np.copyto(host_image.numpy(), image)

    def capture(self) -> None:
        """Warm up on a side stream, then record one frame's work (the staged images are
        real, so the warm-up runs are too)."""
        current = torch.cuda.current_stream(self.device)
        side = torch.cuda.Stream(self.device)
        side.wait_stream(current)
        with torch.cuda.stream(side):
            for _ in range(WARMUP_RUNS):
                self._step()
        current.wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        # thread-local: the node's other threads may free pinned host memory meanwhile
        with torch.cuda.graph(graph, capture_error_mode="thread_local"):
            self.packed, self.layouts = self._step()
        self.graph = graph

    def run(self, images: list[np.ndarray]) -> list[dict[str, np.ndarray]]:
        """The images' results, as host arrays that own their memory."""
        self.stage(images)
        if self.graph is not None:
            self.graph.replay()
            packed, layouts = self.packed, self.layouts
        else:
            packed, layouts = self._step()
        return unpack(to_host(packed).numpy(), layouts)


class FrameGraphs:
    """An engine's plans by key; graphs only where ``capture`` is on (CUDA)."""

    def __init__(self, device: torch.device, capture: bool, log: Log | None = None) -> None:
        self.device = device
        self.capture = capture
        self._log = log or (lambda _: None)
        self._plans: OrderedDict[Hashable, FramePlan] = OrderedDict()
        self.failed: str | None = None  # the first capture failure, logged once

    def run(self, key: Hashable, images: list[np.ndarray], body: Body,
            capturable: bool = True) -> list[dict[str, np.ndarray]]:
        """``body`` over the images; the same key must always mean the same body."""
        plan = self._plans.get(key)
        if plan is not None:
            self._plans.move_to_end(key)
            return plan.run(images)
        plan = FramePlan([image.shape for image in images], self.device, body)
        self._plans[key] = plan
        if len(self._plans) > MAX_PLANS:
            self._plans.popitem(last=False)
        if self.capture and capturable:
            plan.stage(images)
            try:
                plan.capture()
            except Exception as exc:  # noqa: BLE001  a graph is an optimisation, never a need
                plan.graph = None
                torch.cuda.synchronize(self.device)
                if self.failed is None:
                    self.failed = f"{type(exc).__name__}: {exc}".splitlines()[0]
                    self._log(f"CUDA graph capture failed, running frames eagerly: {self.failed}")
        return plan.run(images)

    def captured(self) -> int:
        """How many plans replay a graph (for the benchmark's report and the tests)."""
        return sum(plan.graph is not None for plan in self._plans.values())
