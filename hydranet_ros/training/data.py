"""Training samples from the synthetic world (rendered on the fly) or from a folder.

A sample is a dict of tensors: ``image`` (3, H, W) normalised, ``labels`` (H, W) int64 with
255 = ignore, ``depth`` (H, W) metres with 0 = no data, ``normals`` (3, H, W) with zero
vectors = no data, and ``has_labels`` / ``has_depth`` / ``has_normals`` flags, so a sample
may carry any subset of the tasks (the paper's asymmetric annotations).

Folder layout (NAME is shared by an image and its targets; every target is optional)::

    DATA/images/NAME.png|jpg    the RGB image
    DATA/labels/NAME.png        8-bit class ids, 255 = ignore
    DATA/depth/NAME.png         16-bit depth, metres = value / depth_scale, 0 = no data
    DATA/normals/NAME.png       RGB normals encoded as the release shows them:
                                R = (x+1)/2, G = (y+1)/2, B = (1-z)/2 (all 0 = no data)
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset, IterableDataset, get_worker_info

from ..errors import HydraNetError
from ..images import IMAGE_SUFFIXES, read_rgb
from ..metrics import IGNORE
from ..presets import Preset
from ..synthetic.render import SyntheticWorld
from ..synthetic.scene import TRAIN_SEEDS, frames_per_street



def normalize_image(rgb: np.ndarray, preset: Preset) -> torch.Tensor:
    x = rgb.astype(np.float32) * np.float32(preset.scale)
    x = (x - np.float32(preset.mean)) / np.float32(preset.std)
    return torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1)))


def decode_normals_png(rgb: np.ndarray) -> np.ndarray:
    """Inverse of the release's colour encoding; black pixels mean no data."""
    x = rgb.astype(np.float32) / 255.0
    normals = np.stack([x[..., 0] * 2 - 1, x[..., 1] * 2 - 1, 1 - x[..., 2] * 2], axis=-1)
    normals[(rgb == 0).all(axis=-1)] = 0.0
    return normals


def make_sample(rgb: np.ndarray, labels, depth, normals, preset: Preset) -> dict:
    h, w = rgb.shape[:2]
    return {
        "image": normalize_image(rgb, preset),
        "labels": torch.from_numpy(labels.astype(np.int64)) if labels is not None
        else torch.full((h, w), IGNORE, dtype=torch.int64),
        "depth": torch.from_numpy(np.nan_to_num(depth, nan=0.0).astype(np.float32))
        if depth is not None else torch.zeros(h, w),
        "normals": torch.from_numpy(np.ascontiguousarray(
            np.nan_to_num(normals, nan=0.0).transpose(2, 0, 1)).astype(np.float32))
        if normals is not None else torch.zeros(3, h, w),
        "has_labels": labels is not None, "has_depth": depth is not None,
        "has_normals": normals is not None,
    }


def augment(rgb, labels, depth, normals, crop: tuple[int, int] | None, rng: np.random.Generator):
    """Random crop (the same window for every map), horizontal flip, brightness/contrast."""
    if crop is not None:
        ch, cw = min(crop[0], rgb.shape[0]), min(crop[1], rgb.shape[1])
        top = int(rng.integers(0, rgb.shape[0] - ch + 1))
        left = int(rng.integers(0, rgb.shape[1] - cw + 1))
        window = (slice(top, top + ch), slice(left, left + cw))
        rgb = rgb[window]
        labels = labels[window] if labels is not None else None
        depth = depth[window] if depth is not None else None
        normals = normals[window] if normals is not None else None
    if rng.random() < 0.5:
        rgb = rgb[:, ::-1]
        labels = labels[:, ::-1] if labels is not None else None
        depth = depth[:, ::-1] if depth is not None else None
        if normals is not None:
            normals = normals[:, ::-1] * np.float32([-1.0, 1.0, 1.0])  # mirror x
    gain, bias = rng.uniform(0.8, 1.2), rng.uniform(-20, 20)
    rgb = np.clip(rgb.astype(np.float32) * gain + bias, 0, 255).astype(np.uint8)
    return rgb, labels, depth, normals


class SyntheticStream(IterableDataset):
    """Endless augmented samples of random frames of the training streets.

    Rendered frames go into a pool from which samples are drawn, each frame serving about
    ``reuse`` samples (different crops and flips): rendering then costs a fraction of a
    training step, and consecutive samples come from different streets.
    """

    def __init__(self, preset: Preset, crop: tuple[int, int] | None, seed: int,
                 width: int = 320, height: int = 240, pool: int = 32, reuse: int = 4) -> None:
        self.preset, self.crop, self.seed = preset, crop, seed
        self.width, self.height, self.pool, self.reuse = width, height, pool, reuse

    def __iter__(self):
        worker = get_worker_info()
        rng = np.random.default_rng([self.seed, worker.id if worker else 0])
        world = SyntheticWorld(self.width, self.height)
        per_street = frames_per_street()

        def render():
            frame = world.frame(int(rng.integers(TRAIN_SEEDS.start, TRAIN_SEEDS.stop)),
                                int(rng.integers(per_street)))
            return frame.rgb, frame.labels, frame.depth, frame.normals

        pool = [render() for _ in range(self.pool)]
        while True:
            if rng.random() < 1.0 / self.reuse:
                pool[int(rng.integers(self.pool))] = render()
            rgb, labels, depth, normals = augment(*pool[int(rng.integers(self.pool))],
                                                  self.crop, rng)
            yield make_sample(rgb, labels, depth, normals, self.preset)


class FolderDataset(Dataset):
    """A user's data in the documented folder layout (see the module docstring)."""

    def __init__(self, root: str | Path, preset: Preset, crop: tuple[int, int] | None,
                 depth_scale: float, seed: int) -> None:
        self.root = Path(root)
        images = self.root / "images"
        if not images.is_dir():
            raise HydraNetError(f"{self.root} has no images/ folder (see the training data layout)")
        self.names = sorted(p for p in images.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not self.names:
            raise HydraNetError(f"no images in {images}")
        self.preset, self.crop, self.depth_scale, self.seed = preset, crop, depth_scale, seed

    def __len__(self) -> int:
        return len(self.names)

    def _target(self, folder: str, stem: str, flags: int,
                single_channel: str = "") -> np.ndarray | None:
        """A target PNG as stored, None if absent. ``single_channel`` (what that channel holds)
        refuses a colour or palette file, whose extra axis would fail later in numpy."""
        path = self.root / folder / f"{stem}.png"
        if not path.exists():
            return None
        data = cv2.imread(str(path), flags)
        if data is None:
            raise HydraNetError(f"cannot read {path}")
        if single_channel and data.ndim != 2:
            raise HydraNetError(f"{path} has {data.shape[2]} channels; {folder}/ PNGs must be "
                                f"single-channel ({single_channel})")
        return data

    def load(self, index: int) -> tuple:
        """(rgb, labels, depth in metres, normals) of one image as stored; absent ones None."""
        image = self.names[index]
        rgb = read_rgb(image)
        labels = self._target("labels", image.stem, cv2.IMREAD_UNCHANGED,
                              "8-bit class ids, 255 = ignore")
        depth = self._target("depth", image.stem, cv2.IMREAD_UNCHANGED,
                             "16-bit depth, metres = value / depth scale")
        normals = self._target("normals", image.stem, cv2.IMREAD_COLOR)
        for name, target in (("labels", labels), ("depth", depth), ("normals", normals)):
            if target is not None and target.shape[:2] != rgb.shape[:2]:
                raise HydraNetError(f"{self.root / name / image.stem}.png is "
                                    f"{target.shape[1]}x{target.shape[0]}, its image is "
                                    f"{rgb.shape[1]}x{rgb.shape[0]}")
        if depth is not None:
            depth = np.where(depth > 0, depth.astype(np.float32) / self.depth_scale, np.nan)
        if normals is not None:
            normals = decode_normals_png(normals[..., ::-1])
        return rgb, labels, depth, normals

    def __getitem__(self, index: int) -> dict:
        rng = np.random.default_rng([self.seed, index, torch.initial_seed() % (1 << 31)])
        return make_sample(*augment(*self.load(index), self.crop, rng), self.preset)
