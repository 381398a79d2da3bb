"""Shared fixtures: seeded checkpoints made by the tests, and the release's reference data."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from hydranet_ros.checkpoint import save_checkpoint
from hydranet_ros.model import HydraNet

REPO = Path(__file__).resolve().parents[1]
REFERENCE_SUBDIR = Path("reference") / "multi-task-refinenet"


def find_reference() -> Path | None:
    """``../shared/reference/multi-task-refinenet`` next to the checkout (or $HYDRANET_SHARED)."""
    candidates = [Path(os.environ["HYDRANET_SHARED"])] if "HYDRANET_SHARED" in os.environ else []
    candidates += [parent / "shared" for parent in REPO.parents]
    for shared in candidates:
        if (shared / REFERENCE_SUBDIR).is_dir():
            return shared / REFERENCE_SUBDIR
    return None


@pytest.fixture(scope="session")
def reference() -> Path:
    path = find_reference()
    if path is None:
        pytest.skip("the release's reference data (../shared/reference/multi-task-refinenet) "
                    "is not next to this checkout; set HYDRANET_SHARED to its shared/ folder")
    return path


def randomize(model: HydraNet, seed: int) -> HydraNet:
    """Weights with realistic magnitudes (the release's N(0, 0.01) init makes outputs ~0,
    which would let almost any comparison pass)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if name.endswith("num_batches_tracked"):
                continue
            if name.endswith("running_var"):
                tensor.copy_(torch.rand(tensor.shape, generator=gen) + 0.5)
            elif name.endswith("running_mean") or name.endswith("bias"):
                tensor.copy_(torch.randn(tensor.shape, generator=gen) * 0.1)
            elif tensor.dim() == 1:  # BN scale
                tensor.copy_(torch.rand(tensor.shape, generator=gen) * 0.5 + 0.75)
            else:
                fan_in = tensor[0].numel()
                tensor.copy_(torch.randn(tensor.shape, generator=gen) * (2.0 / fan_in) ** 0.5)
    return model.eval()


def make_model(num_classes: int, num_tasks: int, seed: int = 0) -> HydraNet:
    return randomize(HydraNet(num_classes, num_tasks), seed)


@pytest.fixture
def make_checkpoint(tmp_path: Path):
    """Factory: (num_classes, num_tasks, seed) -> path of a seeded checkpoint file."""
    def factory(num_classes: int = 6, num_tasks: int = 2, seed: int = 0,
                name: str | None = None) -> Path:
        path = tmp_path / (name or f"hydranet_{num_classes}c_{num_tasks}t_{seed}.ckpt")
        save_checkpoint(make_model(num_classes, num_tasks, seed), path)
        return path
    return factory
