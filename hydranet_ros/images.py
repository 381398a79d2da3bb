"""Image files in and out, in RGB order everywhere (OpenCV's BGR stays inside this module)."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

from .errors import HydraNetError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".ppm", ".pgm", ".tif", ".tiff", ".webp")


def read_rgb(path: str | os.PathLike) -> np.ndarray:
    """(H, W, 3) uint8 RGB; grey and 16-bit files are converted as the release's PIL path would."""
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except OSError as exc:
        raise HydraNetError(f"cannot read image {path}: {exc.strerror or exc}") from None
    try:
        image = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    except cv2.error as exc:  # OpenCV refuses, e.g., headers of over 2^30 pixels
        reason = ("over OpenCV's limit of 2^30 pixels" if "MAX_IMAGE_PIXELS" in str(exc)
                  else "OpenCV cannot decode it")
        raise HydraNetError(f"cannot read image {path}: {reason}") from None
    if image is None:
        raise HydraNetError(f"cannot read image {path}: not a readable image file")
    return np.ascontiguousarray(image[..., ::-1])


def write_png(path: str | os.PathLike, image: np.ndarray) -> None:
    """Write RGB (H, W, 3) or single-channel (H, W) uint8/uint16 as PNG."""
    data = image[..., ::-1] if image.ndim == 3 else image
    if not cv2.imwrite(str(path), np.ascontiguousarray(data)):
        raise HydraNetError(f"cannot write {path}")


def find_images(inputs: list[str]) -> list[Path]:
    """Files as given, plus the image files directly inside given folders (sorted)."""
    found: list[Path] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            found.extend(sorted(p for p in path.iterdir()
                                if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES))
        else:
            found.append(path)
    return found
