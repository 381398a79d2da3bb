"""The PyTorch backend: the reference (plain eager fp32) and the optimised CPU and CUDA paths.

CPU: batch-norm folded into the convolutions, channels-last memory, inference mode, and the
graph traced and frozen per input shape (TorchScript fusions; measured 4x faster than plain
eager on a 2-core x86 CPU). CUDA: the folded channels-last model with its weights converted to
fp16 or bf16 (no autocast) and cuDNN autotuning; images go up as uint8 from pinned staging
buffers, and normalisation, resizing, the bicubic upsampling, the argmax, the normal
normalisation and the node's outputs all run on the GPU, each frame's work replayed as one CUDA
graph (``frame_graph.py``), with one transfer back and one synchronisation per frame.
"""

from __future__ import annotations

import copy
import dataclasses
import warnings

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from ..device_outputs import DeviceOutputs
from ..model import HydraNet
from ..outputs import OutputSettings, parts_needed
from ..postprocess import CONFIDENCE, Prediction, label_dtype
from ..presets import Preset
from .base import Engine, EngineError, Log, check_batch, normalize_nhwc
from .frame_graph import FrameGraphs
from .max_pool import measured_max_pools

WEIGHT_DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """A copy of ``model`` for inference with every Conv2d -> BatchNorm2d pair merged."""
    folded = copy.deepcopy(model).eval()
    for module in folded.modules():
        if not isinstance(module, nn.Sequential):
            continue
        children = list(module.named_children())
        for (conv_name, conv), (bn_name, bn) in zip(children, children[1:]):
            if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d):
                setattr(module, conv_name, fuse_conv_bn_eval(conv, bn))
                setattr(module, bn_name, nn.Identity())
    return folded


class TorchEngine(Engine):

    def __init__(self, model: HydraNet, preset: Preset, device: torch.device,
                 precision: str = "fp32", optimize: bool = True,
                 device_postprocess: bool | None = None, cuda_graphs: bool = True,
                 log: Log | None = None) -> None:
        super().__init__(preset, model.num_classes, model.num_tasks)
        self.backend = "torch" if optimize else "reference"
        self.precision = precision
        self.device = str(device)
        self.torch_device = device
        self.optimize = optimize
        self.check_precision(("fp32", "fp16", "bf16") if device.type == "cuda" else ("fp32",))
        #: Post-processing on the device: the default for the optimised CUDA path (the
        #: reference keeps the release's host post-processing); on a CPU only for tests.
        self.device_postprocess = device.type == "cuda" and optimize \
            if device_postprocess is None else device_postprocess
        model = model.eval()
        #: fp16/bf16 on CUDA: the folded model's weights converted, activations in that type
        self.dtype = WEIGHT_DTYPES[precision]
        if optimize:
            model = measured_max_pools(fold_batchnorm(model).to(memory_format=torch.channels_last))
        self.model = model.to(device=device, dtype=self.dtype)
        self._traced: dict[tuple[int, ...], torch.jit.ScriptModule] = {}
        self._device_outputs = None  # made on first use (device_outputs.DeviceOutputs)
        #: Per-frame plans; captured as CUDA graphs on the optimised CUDA path.
        self.graphs = FrameGraphs(device, capture=cuda_graphs and optimize
                                  and device.type == "cuda", log=log)
        if device.type == "cuda":
            torch.backends.cudnn.benchmark = True
        table = np.stack([preset.mean, preset.std]).astype(np.float32)
        self._mean, self._std = torch.from_numpy(table).to(device).view(2, 1, 3, 1, 1)

    def _network(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        if not self.optimize or self.torch_device.type != "cpu":
            return self.model(x.to(self.dtype))
        return self._frozen(x)(x)

    def _frozen(self, x: torch.Tensor) -> torch.nn.Module:
        """The model traced and frozen for this input shape (once), eager if tracing fails."""
        key = tuple(x.shape)
        if key not in self._traced:
            self.model(x)  # eagerly once: the max-pools time their methods (not in the trace)
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    # no check_trace: it traced and ran the model a second time, more than
                    # half of a new size's first frame (the engine tests compare outputs)
                    traced = torch.jit.trace(self.model, x, check_trace=False)
                    self._traced[key] = torch.jit.freeze(traced)
            except Exception:  # noqa: BLE001  tracing is an optimisation, never a requirement
                self._traced[key] = self.model
        return self._traced[key]

    def _host_input(self, batch: np.ndarray) -> torch.Tensor:
        """Normalised on the host (bit-exact with the release), NCHW or channels-last."""
        x = torch.from_numpy(normalize_nhwc(batch, self.preset)).permute(0, 3, 1, 2)
        return x if self.optimize else x.contiguous()

    @torch.inference_mode()
    def infer(self, batch: np.ndarray) -> tuple[np.ndarray, ...]:
        check_batch(batch)
        if self.torch_device.type == "cpu":
            return tuple(out.float().numpy() for out in self._network(self._host_input(batch)))
        if not self.optimize:
            x = self._normalize_on_device(self._upload(batch))
            return tuple(out.float().cpu().numpy() for out in self._network(x))

        def raw_maps(inputs: list[torch.Tensor]) -> list[dict[str, torch.Tensor]]:
            outputs = self._network(self._normalize_on_device(inputs[0]))
            return [{f"raw{i}": out.float() for i, out in enumerate(outputs)}]
        maps = self.graphs.run(("infer", batch.shape), [batch], raw_maps)[0]
        return tuple(maps[f"raw{i}"] for i in range(len(maps)))

    # -- the on-device path ---------------------------------------------------------------

    def _upload(self, batch: np.ndarray) -> torch.Tensor:
        """uint8 NHWC onto the device; through pinned memory without blocking on CUDA."""
        host = torch.from_numpy(batch)
        if self.torch_device.type == "cuda":
            host = host.pin_memory()
        return host.to(self.torch_device, non_blocking=True)

    def _normalize_on_device(self, images: torch.Tensor) -> torch.Tensor:
        """(N, H, W, 3) uint8 -> (N, 3, H, W) float32 channels-last, arithmetic on the device."""
        x = images.permute(0, 3, 1, 2).float() * self.preset.scale
        x = (x - self._mean) / self._std
        return x.contiguous(memory_format=torch.channels_last if self.optimize
                            else torch.contiguous_format)

    def _predict_on_device(self, inputs: list[torch.Tensor], net_size: tuple[int, int],
                           parts: frozenset[str]) -> list[dict[str, torch.Tensor | None]]:
        """(H, W, 3) uint8 device images through the network as one batch at ``net_size``,
        then each one's post-processing at its own size; results stay on the device."""
        resized = [resize_on_device(image[None], net_size) for image in inputs]
        outputs = self._network(self._normalize_on_device(torch.cat(resized)))
        return [postprocess_on_device(tuple(out[i:i + 1] for out in outputs),
                                      tuple(image.shape[:2]), parts, self.num_classes)
                for i, image in enumerate(inputs)]

    @torch.inference_mode()
    def predict(self, images: list[np.ndarray], net_size: tuple[int, int],
                parts: frozenset[str] | set[str]) -> list[Prediction]:
        if not self.device_postprocess:
            return super().predict(images, net_size, parts)
        parts = frozenset(parts)

        def predictions(inputs: list[torch.Tensor]) -> list[dict[str, torch.Tensor]]:
            return [{name: t for name, t in pred.items() if t is not None}
                    for pred in self._predict_on_device(inputs, net_size, parts)]
        key = ("predict", tuple(image.shape for image in images), tuple(net_size), parts)
        return [Prediction(**{name: arrays.get(name) for name in PREDICTION_FIELDS})
                for arrays in self.graphs.run(key, images, predictions)]

    @property
    def outputs_on_device(self) -> bool:
        return self.device_postprocess

    @torch.inference_mode()
    def outputs(self, images: list[np.ndarray], net_size: tuple[int, int], wanted: list[set[str]],
                settings: OutputSettings, intrinsics: list) -> list[dict[str, np.ndarray]]:
        """Network, post-processing and every output on the device (one CUDA graph per kind
        of frame where the outputs' shapes are fixed); everything back in one transfer."""
        if self._device_outputs is None:
            self._device_outputs = DeviceOutputs(self.preset, self.torch_device)
        maker = self._device_outputs
        wanted = [frozenset(w) for w in wanted]
        parts = frozenset().union(*(parts_needed(w) for w in wanted))
        settings = copy.deepcopy(settings)  # the plan keeps them: later edits must not leak in

        def frame_outputs(inputs: list[torch.Tensor]) -> list[dict[str, torch.Tensor]]:
            predictions = self._predict_on_device(inputs, net_size, parts)
            return [maker.compute(image, pred["labels"], pred["depth"], pred["normals"],
                                  pred["confidence"], settings, set(w), intr)
                    for image, pred, w, intr in zip(inputs, predictions, wanted, intrinsics)]
        key = ("outputs", tuple(image.shape for image in images), tuple(net_size), tuple(wanted),
               dataclasses.astuple(settings), tuple(intrinsics))
        capturable = all(maker.fixed_shapes(settings, w) for w in wanted)
        return self.graphs.run(key, images, frame_outputs, capturable)


PREDICTION_FIELDS = ("labels", "depth", "normals", "confidence")


def resize_on_device(images: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(1, H, W, 3) uint8 -> (1, h, w, 3) uint8: area when shrinking, bilinear when enlarging."""
    if tuple(images.shape[1:3]) == tuple(size):
        return images
    x = images.permute(0, 3, 1, 2).float()
    shrinking = size[0] * size[1] < x.shape[2] * x.shape[3]
    x = F.interpolate(x, size=size, mode="area") if shrinking else \
        F.interpolate(x, size=size, mode="bilinear", align_corners=False)
    return x.round_().clamp_(0, 255).to(torch.uint8).permute(0, 2, 3, 1)


def postprocess_on_device(outputs: tuple[torch.Tensor, ...], size: tuple[int, int],
                          parts: frozenset[str] | set[str],
                          num_classes: int) -> dict[str, torch.Tensor | None]:
    """The release's post-processing with torch ops: bicubic upsampling of the raw maps, the
    argmax of the upsampled scores, ``abs()`` depth, unit normals; results stay on the device."""
    def upsample(raw: torch.Tensor) -> torch.Tensor:
        # NCHW: the bicubic kernel reads and writes rows contiguously (same values)
        return F.interpolate(raw.float().contiguous(), size=size, mode="bicubic",
                             align_corners=False)[0]

    result: dict[str, torch.Tensor | None] = {"labels": None, "depth": None, "normals": None,
                                              "confidence": None}
    if "labels" in parts or CONFIDENCE in parts:
        scores = upsample(outputs[0])
        ids = scores.argmax(dim=0)
        if "labels" in parts:
            result["labels"] = ids.to(torch.uint8 if label_dtype(num_classes) == np.uint8
                                      else torch.int32)
        if CONFIDENCE in parts:
            result["confidence"] = confidence_on_device(scores)
    if "depth" in parts:
        result["depth"] = upsample(outputs[1])[0].abs()
    if "normals" in parts and len(outputs) > 2:
        result["normals"] = F.normalize(upsample(outputs[2]), dim=0).permute(1, 2, 0)
    return result


def confidence_on_device(scores: torch.Tensor) -> torch.Tensor:
    """(C, H, W) upsampled scores -> (H, W) uint8, 255 x the softmax probability of the best
    class (as ``postprocess.labels_and_confidence`` on the host); 0 where not finite."""
    total = torch.exp(scores - scores.amax(dim=0)).sum(dim=0)
    probability = torch.nan_to_num(255.0 / total, nan=0.0, posinf=0.0, neginf=0.0)
    return probability.clamp_(0.0, 255.0).round_().to(torch.uint8)


def select_device(spec: str) -> torch.device:
    """'auto' is the first CUDA GPU when there is one, else the CPU."""
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(spec)
    except RuntimeError:
        raise EngineError(f"unknown device '{spec}' (use auto, cpu, cuda or cuda:N)") from None
    if device.type not in ("cpu", "cuda"):
        raise EngineError(f"unsupported device '{spec}' (use auto, cpu, cuda or cuda:N)")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise EngineError(f"device '{spec}' requested but CUDA is not available")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise EngineError(f"device '{spec}' requested but only "
                              f"{torch.cuda.device_count()} CUDA device(s) exist")
    return device
