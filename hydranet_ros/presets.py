"""Presets: what a set of HydraNet weights means (classes, colours, normalisation, depth range).

The facts themselves live in ``presets.json`` next to this file; this module only turns them
into typed objects, so the node, the CLIs and the tests all read the same numbers.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

import numpy as np

from .errors import HydraNetError


@dataclass(frozen=True)
class OfficialWeights:
    file: str
    git_blob: str


@dataclass(frozen=True, eq=False)
class Preset:
    name: str
    description: str
    num_tasks: int
    class_names: tuple[str, ...]
    colors: np.ndarray  # (num_classes, 3) uint8 RGB
    ignore_color: tuple[int, int, int]
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    scale: float
    #: Range of the depth colour map in metres; None scales each image to its own depth range.
    depth_range: tuple[float, float] | None
    weights: OfficialWeights | None
    #: Weights shipped inside this package (path relative to it), instead of a download.
    bundled_weights: str | None = None
    #: Per class, its group for navigation stacks (see ``navigation_groups``).
    navigation: tuple[str, ...] = ()

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def has_normals(self) -> bool:
        return self.num_tasks == 3


class PresetError(HydraNetError):
    pass


@lru_cache(maxsize=1)
def _document() -> dict:
    return json.loads(resources.files(__package__).joinpath("presets.json").read_text())


def official_weights_url(file: str) -> str:
    return _document()["official_weights_url"].format(file=file)


def preset_names() -> list[str]:
    return list(_document()["presets"])


def _build(name: str, entry: dict) -> Preset:
    doc = _document()
    classes = doc["class_sets"][entry["classes"]]
    norm = doc["normalizations"][entry["normalization"]]
    weights = entry.get("weights")
    return Preset(
        name=name,
        description=entry["description"],
        num_tasks=entry["num_tasks"],
        class_names=tuple(c["name"] for c in classes),
        colors=np.array([c["color"] for c in classes], dtype=np.uint8),
        ignore_color=tuple(entry["ignore_color"]),
        mean=tuple(norm["mean"]),
        std=tuple(norm["std"]),
        scale=norm["scale"],
        depth_range=tuple(entry["depth_range"]),
        weights=OfficialWeights(**weights) if weights else None,
        bundled_weights=entry.get("bundled_weights"),
        navigation=tuple(c["navigation"] for c in classes),
    )


@lru_cache(maxsize=None)
def get_preset(name: str) -> Preset:
    presets = _document()["presets"]
    if name not in presets:
        raise PresetError(f"unknown preset '{name}' (known: {', '.join(presets)})")
    return _build(name, presets[name])


def navigation_groups() -> dict[str, dict]:
    """Group name -> how a navigation stack treats its classes (costs, as data)."""
    return {k: v for k, v in _document()["navigation_groups"].items() if not k.startswith("_")}


def pascal_palette(count: int, offset: int = 0) -> np.ndarray:
    """The PASCAL VOC colour palette (bit-interleaved ids), which the release's NYUD map uses."""
    ids = np.arange(offset, offset + count)
    colors = np.zeros((count, 3), dtype=np.uint8)
    for bit in range(8):
        for channel in range(3):
            colors[:, channel] |= (((ids >> (3 * bit + channel)) & 1) << (7 - bit)).astype(np.uint8)
    return colors


def preset_for_model(num_classes: int, num_tasks: int) -> Preset:
    """The official preset matching a model's shape, or a generic one for custom checkpoints."""
    for name in preset_names():
        preset = get_preset(name)
        if preset.num_classes == num_classes and preset.num_tasks == num_tasks:
            return preset
    imagenet = _document()["normalizations"]["imagenet"]
    return Preset(
        name="generic",
        description=f"custom checkpoint, {num_classes} classes, {num_tasks} tasks",
        num_tasks=num_tasks,
        class_names=tuple(f"class_{i}" for i in range(num_classes)),
        colors=pascal_palette(num_classes, offset=1),
        ignore_color=(0, 0, 0),
        mean=tuple(imagenet["mean"]),
        std=tuple(imagenet["std"]),
        scale=imagenet["scale"],
        depth_range=None,
        weights=None,
        navigation=("obstacle",) * num_classes,
    )


def check_compatible(preset: Preset, num_classes: int, source: str) -> None:
    """Refuse a preset whose classes disagree with the loaded weights (heads may differ)."""
    if preset.num_classes != num_classes:
        raise PresetError(f"{source} has {num_classes} classes but preset '{preset.name}' "
                          f"has {preset.num_classes}")
