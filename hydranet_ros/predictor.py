"""Images in, full-resolution Predictions out: the pipeline every front end shares.

A Predictor is a preset (what the classes and ranges mean) plus an engine (how the network
runs). Images are grouped by the size the network runs them at, and each group runs as one
batch, which is how several cameras share one network call.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from . import weights as weights_mod
from .checkpoint import load_model
from .engines import Engine, create_engine
from .engines.base import Log
from .errors import HydraNetError
from .geometry import Intrinsics
from .model import HydraNet
from .outputs import OutputSettings, parts_needed, start_outputs
from .postprocess import PARTS, Prediction
from .presets import Preset, check_compatible, get_preset, preset_for_model, preset_names


def check_rgb(image: np.ndarray) -> None:
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise HydraNetError(f"expected an (H, W, 3) uint8 RGB image, got shape {image.shape} "
                            f"dtype {image.dtype}")
    if image.shape[0] < 1 or image.shape[1] < 1:
        raise HydraNetError(f"image is empty ({image.shape[1]}x{image.shape[0]})")


def choose_preset(weights: str, preset: str | None, model: HydraNet, source: str) -> Preset:
    """The preset asked for, else the official one the weights are named after, else the one
    matching the model's class and task counts."""
    if preset:
        chosen = get_preset(preset)
    elif weights in preset_names():
        chosen = get_preset(weights)
    else:
        chosen = preset_for_model(model.num_classes, model.num_tasks)
    check_compatible(chosen, model.num_classes, source=source)
    return chosen


@dataclass
class Predictor:
    engine: Engine
    preset: Preset

    @classmethod
    def from_weights(cls, weights: str, preset: str | None = None, device: str = "auto",
                     backend: str = "auto", precision: str = "auto", progress: bool = True,
                     log: Log = print, warn: Log = print,
                     calibration: str | None = None) -> "Predictor":
        """Weights as a path or official preset name; the preset defaults to the weights'.
        ``calibration``: the images int8 is calibrated on (a folder, or 'synthetic')."""
        path = weights_mod.resolve(weights, progress=progress)
        model = load_model(path)
        chosen = choose_preset(weights, preset, model, str(path))
        return cls(create_engine(model, chosen, backend, device, precision, log, warn,
                                 calibration), chosen)

    @classmethod
    def for_model(cls, model: HydraNet, preset: Preset, device: str = "cpu",
                  backend: str = "reference", precision: str = "auto") -> "Predictor":
        """A model already in memory; by default the release's exact computation."""
        return cls(create_engine(model, preset, backend, device, precision, log=_quiet), preset)

    @property
    def has_normals(self) -> bool:
        return self.engine.has_normals

    def predict(self, rgb: np.ndarray, net_size: tuple[int, int] | None = None,
                parts: set[str] | frozenset[str] = frozenset(PARTS)) -> Prediction:
        """Results at the image's own resolution, whatever size the network ran at."""
        return self.predict_many([rgb], [net_size], parts)[0]

    def predict_many(self, images: list[np.ndarray], net_sizes: list[tuple[int, int] | None],
                     parts: set[str] | frozenset[str] = frozenset(PARTS)) -> list[Prediction]:
        """Several images; those that run at the same network size go through as one batch."""
        return _by_network_size(images, net_sizes, lambda indices, size: self.engine.predict(
            [images[i] for i in indices], size, parts))

    def outputs_many(self, images: list[np.ndarray], net_sizes: list[tuple[int, int] | None],
                     wanted: list[set[str]], settings: OutputSettings,
                     intrinsics: list[Intrinsics | None]) -> tuple[list[dict], float]:
        """The node's output arrays of each image (``wanted`` per image), and the seconds the
        network and its post-processing took. CUDA engines make everything on the GPU; the
        others predict, then make the arrays on the host (``outputs.start_outputs``: the
        views still being made when this returns, read as they finish)."""
        started = time.perf_counter()
        if self.engine.outputs_on_device:
            results = _by_network_size(images, net_sizes, lambda indices, size: self.engine.outputs(
                [images[i] for i in indices], size, [wanted[i] for i in indices], settings,
                [intrinsics[i] for i in indices]))
            return results, time.perf_counter() - started
        parts = set().union(*(parts_needed(w) for w in wanted))
        predictions = self.predict_many(images, net_sizes, parts)
        network_s = time.perf_counter() - started
        return [start_outputs(image, pred, self.preset, settings, w, intr)
                for image, pred, w, intr in zip(images, predictions, wanted, intrinsics)], network_s


def _by_network_size(images: list[np.ndarray], net_sizes: list[tuple[int, int] | None],
                     run) -> list:
    """``run(indices, size)`` once per group of images with the same network size (one
    batch each); the results back in the images' order."""
    groups: dict[tuple[int, int], list[int]] = {}
    for index, (image, size) in enumerate(zip(images, net_sizes)):
        check_rgb(image)
        groups.setdefault(size or image.shape[:2], []).append(index)
    results: list = [None] * len(images)
    for size, indices in groups.items():
        for i, result in zip(indices, run(indices, size)):
            results[i] = result
    return results


def _quiet(_: str) -> None:
    pass


def inference_size(image_size: tuple[int, int], width: int, height: int) -> tuple[int, int] | None:
    """The network's input size for an image: 0 x 0 is native, one 0 keeps the aspect ratio."""
    if width <= 0 and height <= 0:
        return None
    image_height, image_width = image_size
    if width <= 0:
        width = max(1, round(image_width * height / image_height))
    if height <= 0:
        height = max(1, round(image_height * width / image_width))
    return height, width
