"""The OpenVINO backend: the fastest path on Intel and AMD CPUs.

The model is exported to OpenVINO IR once per input shape (cached on disk) and compiled with
the latency hint; on CPUs with native bf16 (AVX512-BF16, AMX) it can run in bf16, at a small,
guarded cost in accuracy, which is not always faster (precision ``auto`` times both on the
first frame: ``fastest.py``). ``int8`` runs an IR quantised
with NNCF on calibration frames (``quantize.py``); what it does not quantise runs in bf16
where the CPU has it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..model import HydraNet
from ..presets import Preset
from .base import Engine, EngineError, Log, check_batch
from .export import cached_export
from .openvino_runtime import openvino, shared_core
from .quantize import cached_int8, check_calibration

RUNTIME_PRECISION = {"fp32": "f32", "bf16": "bf16", "fp16": "f16"}


def cpu_supports_bf16() -> bool:
    """Whether OpenVINO can run bf16 natively on this CPU (AVX512-BF16 or AMX)."""
    try:
        return "BF16" in shared_core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    except Exception:  # noqa: BLE001  no OpenVINO, no bf16
        return False


#: /proc/cpuinfo flags of the 8-bit dot-product instructions int8 convolutions need to keep
#: their accuracy: without them (AVX2 alone) oneDNN multiplies bytes into saturating 16-bit
#: sums.
VNNI_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8")
#: What int8 lost without them, for the warning: measured with the bundled weights on 20
#: held-out frames (``test/test_int8.py``) on an AMD EPYC with AVX2 alone, and with VNNI.
NO_VNNI_ABS_REL_LOSS, VNNI_ABS_REL_LOSS = 0.012, 0.002


def cpu_has_vnni(cpuinfo: Path = Path("/proc/cpuinfo")) -> bool | None:
    """Whether this CPU has 8-bit dot products (``VNNI_FLAGS``); None where its flags cannot
    be read (not Linux)."""
    try:
        text = cpuinfo.read_text()
    except OSError:
        return None
    flags = {flag for line in text.splitlines() if line.startswith("flags")
             for flag in line.split(":", 1)[-1].split()}
    return bool(flags & set(VNNI_FLAGS))


class OpenVINOEngine(Engine):
    backend = "openvino"

    def __init__(self, model: HydraNet, preset: Preset, precision: str = "fp32",
                 log: Log | None = None, calibration: str | None = None) -> None:
        super().__init__(preset, model.num_classes, model.num_tasks)
        self.precision = precision
        self.device = "cpu"
        self._core = shared_core()
        bf16 = cpu_supports_bf16()
        self.check_precision(("fp32", "bf16", "int8") if bf16 else ("fp32", "int8"))
        if precision == "int8":
            try:
                import nncf  # noqa: F401
            except ImportError as exc:
                raise EngineError(f"int8 needs the 'nncf' package ({exc}); pip install nncf") from None
            self._calibration = check_calibration(calibration, preset)
            if cpu_has_vnni() is False:
                self.caveat = (f"int8 on a CPU without VNNI ({', '.join(VNNI_FLAGS)}): its "
                               "8-bit products saturate and cost accuracy (depth AbsRel "
                               f"+{NO_VNNI_ABS_REL_LOSS} against fp32 on an AVX2 CPU, "
                               f"+{VNNI_ABS_REL_LOSS} with VNNI); precision fp32 keeps it")
        #: what the runtime computes in: int8 layers aside, bf16 where the CPU has it
        self._runtime = RUNTIME_PRECISION["bf16" if precision == "int8" and bf16 else
                                          "fp32" if precision == "int8" else precision]
        self._model = model.cpu().eval()
        self._requests: dict[tuple[int, ...], object] = {}
        self._log = log

    def _request(self, shape: tuple[int, ...]):
        """An inference request compiled for this (N, H, W) input shape, once."""
        if shape not in self._requests:
            if self.precision == "int8":
                path = cached_int8(self._model, self.preset, shape[1:3], shape[0],
                                   self._calibration, self._log)
            else:
                path = cached_export(self._model, "openvino", shape[1:3], shape[0],
                                     self.precision, self._log)
            # no CACHE_DIR: compiling takes a fraction of a second, and OpenVINO's compiled
            # blobs would be a cache this package cannot verify
            config = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": self._runtime}
            try:
                compiled = self._core.compile_model(self._with_uint8_input(path), "CPU", config)
            except Exception as exc:  # noqa: BLE001
                raise EngineError(f"OpenVINO could not compile {path}: {exc}") from None
            self._requests[shape] = compiled.create_infer_request()
        return self._requests[shape]

    def _with_uint8_input(self, path):
        """The exported model (float NCHW input) taking the camera's uint8 NHWC frames: the
        conversion and normalisation become the graph's first operations, which OpenVINO
        fuses, instead of 3 ms of host work per 640x480 frame. The result differs from the
        host's float64-rounded normalisation by at most one float32 ulp."""
        ov = openvino()
        model = self._core.read_model(str(path))
        ppp = ov.preprocess.PrePostProcessor(model)
        ppp.input().tensor().set_element_type(ov.Type.u8).set_layout(ov.Layout("NHWC"))
        ppp.input().model().set_layout(ov.Layout("NCHW"))
        scale = self.preset.scale
        ppp.input().preprocess().convert_element_type(ov.Type.f32) \
            .mean([m / scale for m in self.preset.mean]) \
            .scale([s / scale for s in self.preset.std])
        return ppp.build()

    def infer(self, batch: np.ndarray) -> tuple[np.ndarray, ...]:
        return tuple(np.array(out, dtype=np.float32) for out in self.infer_for_postprocess(batch))

    def infer_for_postprocess(self, batch: np.ndarray) -> tuple[np.ndarray, ...]:
        """The request's own output buffers (valid until its next inference): 3 MB less to
        copy per 640x480 frame at 40 classes, 0.35 ms. The input is shared, not copied, and
        the request's result (a copy of every output unless shared) is not needed."""
        check_batch(batch)
        request = self._request(batch.shape[:3])
        request.infer({0: np.ascontiguousarray(batch)}, share_inputs=True, share_outputs=True)
        return tuple(request.get_output_tensor(i).data for i in range(self.num_tasks))
