"""The OpenVINO backend: the fastest path on Intel and AMD CPUs.

The model is exported to OpenVINO IR once per input shape (cached on disk) and compiled with
the latency hint; on CPUs with native bf16 (AVX512-BF16, AMX) it runs in bf16, which roughly
halves the time of f32 at a small, guarded cost in accuracy.
"""

from __future__ import annotations

import numpy as np

from ..model import HydraNet
from ..presets import Preset
from .base import Engine, EngineError, Log, check_batch, normalize_nchw
from .export import cached_export

RUNTIME_PRECISION = {"fp32": "f32", "bf16": "bf16", "fp16": "f16"}


def _openvino():
    try:
        import openvino
    except ImportError as exc:
        raise EngineError(f"the 'openvino' package is not installed ({exc}); "
                          "pip install openvino") from None
    return openvino


def cpu_supports_bf16() -> bool:
    """Whether OpenVINO can run bf16 natively on this CPU (AVX512-BF16 or AMX)."""
    try:
        core = _openvino().Core()
        return "BF16" in core.get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    except Exception:  # noqa: BLE001  no OpenVINO, no bf16
        return False


class OpenVINOEngine(Engine):
    backend = "openvino"

    def __init__(self, model: HydraNet, preset: Preset, precision: str = "fp32",
                 log: Log | None = None) -> None:
        super().__init__(preset, model.num_classes, model.num_tasks)
        self.precision = precision
        self.device = "cpu"
        ov = _openvino()
        self._core = ov.Core()
        supported = ("fp32", "bf16") if cpu_supports_bf16() else ("fp32",)
        self.check_precision(supported)
        self._model = model.cpu().eval()
        self._requests: dict[tuple[int, ...], object] = {}
        self._log = log

    def _request(self, shape: tuple[int, ...]):
        """An inference request compiled for this (N, H, W) input shape, once."""
        if shape not in self._requests:
            path = cached_export(self._model, "openvino", shape[1:3], shape[0], self.precision,
                                 self._log)
            # no CACHE_DIR: compiling takes a fraction of a second, and OpenVINO's compiled
            # blobs would be a cache this package cannot verify
            config = {"PERFORMANCE_HINT": "LATENCY",
                      "INFERENCE_PRECISION_HINT": RUNTIME_PRECISION[self.precision]}
            try:
                compiled = self._core.compile_model(str(path), "CPU", config)
            except Exception as exc:  # noqa: BLE001
                raise EngineError(f"OpenVINO could not compile {path}: {exc}") from None
            self._requests[shape] = compiled.create_infer_request()
        return self._requests[shape]

    def infer(self, batch: np.ndarray) -> tuple[np.ndarray, ...]:
        check_batch(batch)
        request = self._request(batch.shape[:3])
        request.infer({0: normalize_nchw(batch, self.preset)})
        return tuple(np.array(request.get_output_tensor(i).data, dtype=np.float32)
                     for i in range(self.num_tasks))
