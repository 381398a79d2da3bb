"""One image in, one full-resolution Prediction out: the pipeline every front end shares."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch

from . import weights as weights_mod
from .checkpoint import load_model
from .errors import HydraNetError
from .model import HydraNet
from .postprocess import PARTS, Prediction, postprocess
from .presets import Preset, check_compatible, get_preset, preset_for_model, preset_names


def select_device(spec: str) -> torch.device:
    """'auto' is the first CUDA GPU when there is one, else the CPU."""
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(spec)
    except RuntimeError:
        raise HydraNetError(f"unknown device '{spec}' (use auto, cpu, cuda or cuda:N)") from None
    if device.type not in ("cpu", "cuda"):
        raise HydraNetError(f"unsupported device '{spec}' (use auto, cpu, cuda or cuda:N)")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise HydraNetError(f"device '{spec}' requested but CUDA is not available")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise HydraNetError(f"device '{spec}' requested but only "
                                f"{torch.cuda.device_count()} CUDA device(s) exist")
    return device


def normalize(rgb: np.ndarray, preset: Preset) -> np.ndarray:
    """(H, W, 3) uint8 RGB -> (1, 3, H, W) float32 network input.

    Computed in float64 and rounded once, exactly as the release's ``prepare_img``.
    """
    mean = np.asarray(preset.mean).reshape(1, 1, 3)
    std = np.asarray(preset.std).reshape(1, 1, 3)
    x = (rgb * preset.scale - mean) / std
    return np.ascontiguousarray(x.transpose(2, 0, 1)[None], dtype=np.float32)


def check_rgb(image: np.ndarray) -> None:
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise HydraNetError(f"expected an (H, W, 3) uint8 RGB image, got shape {image.shape} "
                            f"dtype {image.dtype}")
    if image.shape[0] < 1 or image.shape[1] < 1:
        raise HydraNetError(f"image is empty ({image.shape[1]}x{image.shape[0]})")


@dataclass
class Predictor:
    model: HydraNet
    preset: Preset
    device: torch.device

    @classmethod
    def from_weights(cls, weights: str, preset: str | None = None, device: str = "auto",
                     progress: bool = True) -> "Predictor":
        """Weights as a path or official preset name; the preset defaults to the weights'."""
        path = weights_mod.resolve(weights, progress=progress)
        model = load_model(path)
        if preset is None:
            chosen = get_preset(weights) if weights in preset_names() else \
                preset_for_model(model.num_classes, model.num_tasks)
        else:
            chosen = get_preset(preset)
        check_compatible(chosen, model.num_classes, source=str(path))
        dev = select_device(device)
        return cls(model.to(dev), chosen, dev)

    @property
    def has_normals(self) -> bool:
        return self.model.num_tasks == 3

    @torch.inference_mode()
    def raw_outputs(self, rgb: np.ndarray,
                    inference_size: tuple[int, int] | None = None) -> tuple[np.ndarray, ...]:
        """The network's outputs for one image, without the batch axis, on the CPU.

        ``inference_size`` (height, width) runs the network on a resized copy of the image.
        """
        check_rgb(rgb)
        if inference_size is not None and inference_size != rgb.shape[:2]:
            rgb = resize_image(rgb, inference_size)
        x = torch.from_numpy(normalize(rgb, self.preset)).to(self.device)
        return tuple(out[0].float().cpu().numpy() for out in self.model(x))

    def predict(self, rgb: np.ndarray, inference_size: tuple[int, int] | None = None,
                parts: set[str] | frozenset[str] = frozenset(PARTS)) -> Prediction:
        """Results at the image's own resolution, whatever size the network ran at."""
        return postprocess(self.raw_outputs(rgb, inference_size), rgb.shape[:2], parts)


def resize_image(rgb: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Area averaging when shrinking (no aliasing), bilinear when enlarging."""
    height, width = size
    shrinking = height * width < rgb.shape[0] * rgb.shape[1]
    return cv2.resize(rgb, (width, height),
                      interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)


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
