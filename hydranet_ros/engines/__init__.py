"""Inference engines: one interface (``Engine``), several backends, and the choice between them.

``create_engine`` is what the node, the CLIs and the benchmark call. ``backend="auto"`` picks
the fastest backend for the device (PyTorch on an NVIDIA GPU, in whichever precision measures
fastest on the first frame: ``fastest.py``; else OpenVINO, else ONNX Runtime, else PyTorch)
and says why; a backend that is missing or fails to start is reported in one line and the
next one is tried, ending with PyTorch fp32, which always works. A backend that prepares
itself on the first frame (OpenVINO, ONNX Runtime: ``fallback.py``) and fails there is
reported in one line too, and PyTorch fp32 takes over.
"""

from __future__ import annotations

import torch

from ..model import HydraNet
from ..presets import Preset
from .base import PRECISIONS, Engine, EngineError, Log
from .fallback import FallbackEngine
from .fastest import FastestEngine, measuring_rounds
from .onnxruntime_engine import OnnxRuntimeEngine
from .openvino_engine import OpenVINOEngine, cpu_supports_bf16
from .torch_engine import TorchEngine, select_device

#: ``reference`` is the plain eager fp32 model, the release's exact computation (and the
#: baseline speed-ups are measured against); ``torch`` is PyTorch optimised.
BACKENDS = ("auto", "torch", "openvino", "onnxruntime", "reference")

__all__ = ["BACKENDS", "PRECISIONS", "Engine", "EngineError", "create_engine", "build_engine",
           "select_device"]


def measured_precisions(backend: str, device: torch.device) -> tuple[str, ...]:
    """The precisions ``auto`` times on the first frame to keep the fastest (``fastest.py``):
    PyTorch's on a GPU, where which one wins depends on the GPU and the frame size, and
    OpenVINO's on a CPU that has bf16, where it is not always the faster (a 2-core Xeon VM
    with AVX512-BF16 but no AMX, ``hydranet-bench`` at 640x480: 126.1 ms against 86.9 ms
    for fp32); none elsewhere
    (``default_precision`` decides)."""
    if backend == "torch" and device.type == "cuda":
        return ("fp16", "bf16", "fp32") if torch.cuda.is_bf16_supported() else ("fp16", "fp32")
    if backend == "openvino" and cpu_supports_bf16():
        return ("bf16", "fp32")
    return ()


def default_precision(backend: str, device: torch.device) -> str:
    """The precision of a backend whose precisions are not measured (``measured_precisions``):
    fp32, the one every backend and device has."""
    return "fp32"


def build_engine(model: HydraNet, preset: Preset, backend: str, device: torch.device,
                 precision: str = "auto", log: Log | None = None,
                 calibration: str | None = None, warn: Log | None = None) -> Engine:
    """Exactly the backend asked for, or EngineError; ``log`` hears of one-time exports,
    ``warn`` of a precision that failed where ``auto`` measures them (``fastest.py``).
    ``calibration`` (int8): a folder of images, or 'synthetic'; None is the preset's default."""
    if backend == "reference":
        if precision not in ("auto", "fp32"):
            raise EngineError(f"the reference backend runs fp32 only, not {precision}")
        return TorchEngine(model, preset, device, "fp32", optimize=False)
    if precision == "auto":
        measured = measured_precisions(backend, device)
        if len(measured) > 1:
            return FastestEngine([build_engine(model, preset, backend, device, choice, log,
                                               calibration, warn) for choice in measured],
                                 log=log, warn=warn, rounds=measuring_rounds(device))
        precision = default_precision(backend, device)
    if precision not in PRECISIONS:
        raise EngineError(f"unknown precision '{precision}' (use auto, {', '.join(PRECISIONS)})")
    if backend == "torch":
        return TorchEngine(model, preset, device, precision, log=log)
    if backend == "openvino":
        if device.type != "cpu":
            raise EngineError(f"the openvino backend runs on the CPU, not {device}")
        return OpenVINOEngine(model, preset, precision, log, calibration)
    if backend == "onnxruntime":
        return OnnxRuntimeEngine(model, preset, str(device), precision, log)
    raise EngineError(f"unknown backend '{backend}' (use {', '.join(BACKENDS)})")


def auto_order(device: torch.device) -> list[tuple[str, str]]:
    """Backends to try for ``auto``, fastest first, each with the reason it is chosen."""
    if device.type == "cuda":
        return [("torch", f"CUDA device {device}: PyTorch, each frame one CUDA graph"),
                ("onnxruntime", "CUDA device, PyTorch failed: ONNX Runtime's GPU providers")]
    return [("openvino", "no CUDA device: OpenVINO is the fastest CPU backend"),
            ("onnxruntime", "no CUDA device and no OpenVINO: ONNX Runtime on the CPU"),
            ("torch", "no CUDA device, OpenVINO or ONNX Runtime: PyTorch on the CPU")]


def create_engine(model: HydraNet, preset: Preset, backend: str = "auto", device: str = "auto",
                  precision: str = "auto", log: Log = print, warn: Log = print,
                  calibration: str | None = None) -> Engine:
    """The engine to run with: the backend asked for, or the best that works, never none.

    A failure of the requested backend is one warning line, then PyTorch fp32 takes over,
    whether it fails now or when it prepares itself for the first frame (``fallback.py``).
    """
    torch_device = select_device(device)
    if backend == "auto":
        candidates = auto_order(torch_device)
    elif backend in BACKENDS:
        candidates = [(backend, "requested")]
    else:
        raise EngineError(f"unknown backend '{backend}' (use {', '.join(BACKENDS)})")
    for name, reason in candidates:
        try:
            engine = build_engine(model, preset, name, torch_device, precision, log, calibration,
                                  warn)
        except EngineError as exc:
            warn(f"backend {name} not used: {exc}")
            continue
        except Exception as exc:  # noqa: BLE001  a broken install must not stop the node
            warn(f"backend {name} not used: it failed to start: {type(exc).__name__}: {exc}")
            continue
        log(f"inference backend: {engine.describe()} ({reason})")
        if engine.caveat:
            warn(engine.caveat)
        return with_fallback(engine, model, preset, torch_device, warn)
    engine = build_engine(model, preset, "torch", torch_device, "fp32")
    log(f"inference backend: {engine.describe()} (fallback)")
    return engine


#: Backends that export and compile the network when the first frame of a shape comes.
PREPARED_ON_FIRST_FRAME = ("openvino", "onnxruntime")


def with_fallback(engine: Engine, model: HydraNet, preset: Preset, device: torch.device,
                  warn: Log) -> Engine:
    """``engine``, with PyTorch fp32 on the same device to take over if it is a backend that
    prepares itself on the first frame and fails to (``fallback.py``). The stand-in makes its
    outputs where the engine did (host or device), as the node planned for at start."""
    if engine.backend not in PREPARED_ON_FIRST_FRAME:
        return engine
    on_device = engine.outputs_on_device
    return FallbackEngine(engine, lambda: TorchEngine(model, preset, device, "fp32",
                                                      device_postprocess=on_device), warn)
