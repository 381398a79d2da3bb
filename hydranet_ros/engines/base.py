"""What every inference engine offers, and the steps they all share.

An engine takes uint8 RGB images and returns full-resolution Predictions. The default path
(normalise on the host, run the network, post-process on the host as the release does) is
written once here; a backend only supplies ``infer``, or overrides ``predict`` where it can do
the post-processing on its own device.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from functools import lru_cache
from typing import Callable, TypeVar

import cv2
import numpy as np

from ..errors import HydraNetError
from ..postprocess import Prediction, postprocess
from ..presets import Preset

#: Where engines report what they chose (print for CLIs, a node's logger).
Log = Callable[[str], None]
#: The precisions a user can ask for; each backend supports a subset (int8: OpenVINO).
PRECISIONS = ("fp32", "fp16", "bf16", "int8")


class EngineError(HydraNetError):
    """A backend is missing, cannot run on this device, or failed to initialise."""


@lru_cache(maxsize=8)
def normalization_table(mean: tuple[float, ...], std: tuple[float, ...],
                        scale: float) -> np.ndarray:
    """(1, 256, 3) float32: the normalised value of every byte in every channel.

    Computed in float64 and rounded once, exactly as the release's ``prepare_img``; a table
    lookup then gives bit-identical inputs several times faster than the arithmetic.
    """
    values = np.arange(256, dtype=np.float64).reshape(256, 1)
    table = (values * scale - np.asarray(mean)) / np.asarray(std)
    return table.astype(np.float32).reshape(1, 256, 3)


def normalize_nhwc(images: np.ndarray, preset: Preset) -> np.ndarray:
    """(N, H, W, 3) uint8 RGB -> (N, H, W, 3) float32 network input, channels last."""
    table = normalization_table(tuple(preset.mean), tuple(preset.std), preset.scale)
    out = np.empty(images.shape, dtype=np.float32)
    for i, image in enumerate(images):
        cv2.LUT(image, table, dst=out[i])
    return out


def normalize_nchw(images: np.ndarray, preset: Preset) -> np.ndarray:
    """(N, H, W, 3) uint8 RGB -> (N, 3, H, W) float32, the layout exported models take."""
    return np.ascontiguousarray(normalize_nhwc(images, preset).transpose(0, 3, 1, 2))


def resize_image(rgb: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Area averaging when shrinking (no aliasing), bilinear when enlarging."""
    height, width = size
    if rgb.shape[:2] == (height, width):
        return rgb
    shrinking = height * width < rgb.shape[0] * rgb.shape[1]
    return cv2.resize(rgb, (width, height),
                      interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)


def stack_at(images: list[np.ndarray], net_size: tuple[int, int]) -> np.ndarray:
    """The images resized to the network's input size, as one (N, H, W, 3) batch."""
    batch = np.empty((len(images), *net_size, 3), dtype=np.uint8)
    for i, image in enumerate(images):
        batch[i] = resize_image(image, net_size)
    return batch


class Engine(ABC):
    """A network ready to run: ``backend`` and ``precision`` name how, ``device`` where."""

    backend: str
    precision: str
    device: str

    def __init__(self, preset: Preset, num_classes: int, num_tasks: int) -> None:
        self.preset = preset
        self.num_classes = num_classes
        self.num_tasks = num_tasks

    @property
    def has_normals(self) -> bool:
        return self.num_tasks == 3

    def describe(self) -> str:
        return f"{self.backend} {self.precision} on {self.device}"

    @abstractmethod
    def infer(self, batch: np.ndarray) -> tuple[np.ndarray, ...]:
        """(N, H, W, 3) uint8 RGB -> the raw outputs as (N, C, H/4, W/4) float32 host arrays."""

    def infer_for_postprocess(self, batch: np.ndarray) -> tuple[np.ndarray, ...]:
        """``infer`` for ``predict``, whose post-processing reads the raw outputs before the
        next inference: engines whose outputs live in their own buffers may return those."""
        return self.infer(batch)

    def predict(self, images: list[np.ndarray], net_size: tuple[int, int],
                parts: frozenset[str] | set[str]) -> list[Prediction]:
        """Images (any sizes) run as one batch at ``net_size``; results at each image's size."""
        raw = self.infer_for_postprocess(stack_at(images, net_size))
        return [postprocess(tuple(out[i] for out in raw), image.shape[:2], parts)
                for i, image in enumerate(images)]

    #: Whether ``device_outputs`` makes the node's output arrays on the engine's device.
    outputs_on_device = False
    #: What this engine costs on this machine that its user should hear of, in one line
    #: (``create_engine`` says it as a warning), or None.
    caveat: str | None = None

    def outputs(self, images: list[np.ndarray], net_size: tuple[int, int], wanted: list[set[str]],
                settings, intrinsics: list) -> list[dict[str, np.ndarray]]:
        """The node's output arrays of each image, made on the engine's device (engines with
        ``outputs_on_device``; the others make them on the host from ``predict``)."""
        raise NotImplementedError(f"{self.backend} makes its outputs on the host")

    def check_precision(self, supported: tuple[str, ...]) -> None:
        if self.precision not in supported:
            raise EngineError(f"backend {self.backend} on {self.device} supports precision "
                              f"{', '.join(supported)}, not {self.precision}")


Result = TypeVar("Result")


class RoutingEngine(Engine):
    """An engine whose calls go to one of several engines it holds (``_call`` decides which
    and how): the precision measured on the first frame (``fastest.py``), a backend with
    PyTorch to take over (``fallback.py``)."""

    @abstractmethod
    def _call(self, call: Callable[[Engine], Result]) -> Result:
        """``call(engine)`` on the engine that serves it."""

    def infer(self, batch: np.ndarray) -> tuple[np.ndarray, ...]:
        return self._call(lambda engine: engine.infer(batch))

    def infer_for_postprocess(self, batch: np.ndarray) -> tuple[np.ndarray, ...]:
        return self._call(lambda engine: engine.infer_for_postprocess(batch))

    def predict(self, images, net_size, parts):
        return self._call(lambda engine: engine.predict(images, net_size, parts))

    def outputs(self, images, net_size, wanted, settings, intrinsics):
        return self._call(lambda engine: engine.outputs(images, net_size, wanted, settings,
                                                        intrinsics))


def check_batch(batch: np.ndarray) -> None:
    if batch.ndim != 4 or batch.shape[3] != 3 or batch.dtype != np.uint8 or 0 in batch.shape:
        raise HydraNetError(f"expected a non-empty (N, H, W, 3) uint8 RGB batch, got shape "
                            f"{batch.shape} dtype {batch.dtype}")
