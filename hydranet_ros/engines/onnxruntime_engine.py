"""The ONNX Runtime backend: CPU everywhere, CUDA and TensorRT execution providers when the
installed onnxruntime build has them (onnxruntime-gpu)."""

from __future__ import annotations

import numpy as np

from ..model import HydraNet
from ..presets import Preset
from .base import Engine, EngineError, Log, check_batch, normalize_nchw
from .export import cached_export, engine_cache_dir


def _onnxruntime():
    try:
        import onnxruntime
    except ImportError as exc:
        raise EngineError(f"the 'onnxruntime' package is not installed ({exc}); "
                          "pip install onnxruntime") from None
    return onnxruntime


def providers_for(device: str, precision: str, available: list[str]) -> list:
    """Execution providers, fastest first: TensorRT, then CUDA on a GPU; the CPU always."""
    chosen: list = []
    if device.startswith("cuda"):
        index = int(device.split(":")[1]) if ":" in device else 0
        if "TensorrtExecutionProvider" in available:
            chosen.append(("TensorrtExecutionProvider", {
                "device_id": index, "trt_fp16_enable": precision == "fp16",
                "trt_engine_cache_enable": True,
                "trt_engine_cache_path": str(engine_cache_dir() / "tensorrt")}))
        if "CUDAExecutionProvider" in available:
            chosen.append(("CUDAExecutionProvider", {"device_id": index}))
        if not chosen:
            raise EngineError("this onnxruntime build has no CUDA or TensorRT execution "
                              "provider (pip install onnxruntime-gpu)")
    if precision == "fp16" and not any(p[0] == "TensorrtExecutionProvider" for p in chosen):
        raise EngineError("onnxruntime runs fp16 only through TensorRT; use fp32")
    return chosen + ["CPUExecutionProvider"]


class OnnxRuntimeEngine(Engine):
    backend = "onnxruntime"

    def __init__(self, model: HydraNet, preset: Preset, device: str = "cpu",
                 precision: str = "fp32", log: Log | None = None) -> None:
        super().__init__(preset, model.num_classes, model.num_tasks)
        self.precision = precision
        self.device = device
        self._ort = _onnxruntime()
        self._providers = providers_for(device, precision, self._ort.get_available_providers())
        self._model = model.cpu().eval()
        self._sessions: dict[tuple[int, ...], object] = {}
        self._log = log

    def _session(self, shape: tuple[int, ...]):
        if shape not in self._sessions:
            path = cached_export(self._model, "onnx", shape[1:3], shape[0], "fp32", self._log)
            options = self._ort.SessionOptions()
            options.graph_optimization_level = self._ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            try:
                self._sessions[shape] = self._ort.InferenceSession(
                    str(path), options, providers=self._providers)
            except Exception as exc:  # noqa: BLE001
                raise EngineError(f"onnxruntime could not load {path}: {exc}") from None
        return self._sessions[shape]

    def infer(self, batch: np.ndarray) -> tuple[np.ndarray, ...]:
        check_batch(batch)
        outputs = self._session(batch.shape[:3]).run(None, {"image": normalize_nchw(batch, self.preset)})
        return tuple(np.asarray(out, dtype=np.float32) for out in outputs)
