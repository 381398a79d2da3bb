"""Checkpoint loading: every container form the wild has, and one clear line for every bad file."""

from __future__ import annotations

import os
import pickle
from collections import OrderedDict
from pathlib import Path

import pytest
import torch
from torch import nn

from conftest import make_model
from hydranet_ros.checkpoint import (CheckpointError, load_model, read_state_dict,
                                     save_checkpoint)
from hydranet_ros.model import HydraNet


def outputs(model: HydraNet, seed: int = 0) -> tuple[torch.Tensor, ...]:
    x = torch.randn(1, 3, 64, 96, generator=torch.Generator().manual_seed(seed))
    with torch.inference_mode():
        return model(x)


def assert_same_model(loaded: HydraNet, original: HydraNet) -> None:
    assert (loaded.num_classes, loaded.num_tasks) == (original.num_classes, original.num_tasks)
    assert not loaded.training
    for a, b in zip(outputs(loaded), outputs(original)):
        assert torch.equal(a, b)


def without_counters(state: dict) -> OrderedDict:
    """As the official PyTorch 0.4 files: no BatchNorm ``num_batches_tracked`` entries."""
    return OrderedDict((k, v) for k, v in state.items() if not k.endswith("num_batches_tracked"))


@pytest.mark.parametrize("classes, tasks", [(6, 2), (40, 2), (40, 3)])
@pytest.mark.parametrize("form", ["wrapped", "bare", "module_prefix", "data_parallel"])
def test_container_forms_load_and_infer_architecture(tmp_path, classes, tasks, form):
    model = make_model(classes, tasks, seed=1)
    state = model.state_dict()
    payload = {
        "wrapped": {"state_dict": state, "epoch": 3},
        "bare": state,
        "module_prefix": OrderedDict((f"module.{k}", v) for k, v in state.items()),
        # nn.DataParallel's own state_dict carries version metadata under prefixed names.
        "data_parallel": {"state_dict": nn.DataParallel(model).state_dict()},
    }[form]
    path = tmp_path / "w.ckpt"
    torch.save(payload, path)
    assert_same_model(load_model(path), model)


@pytest.mark.parametrize("legacy_format", [False, True])
@pytest.mark.parametrize("prefixed", [False, True])
def test_files_without_batchnorm_counters_load(tmp_path, legacy_format, prefixed):
    """The official checkpoints predate num_batches_tracked (saved by PyTorch 0.4)."""
    model = make_model(40, 3, seed=2)
    state = without_counters(model.state_dict())
    if prefixed:
        state = OrderedDict((f"module.{k}", v) for k, v in state.items())
    path = tmp_path / "old.ckpt"
    torch.save({"state_dict": state}, path, _use_new_zipfile_serialization=not legacy_format)
    assert_same_model(load_model(path), model)


def test_round_trip_official_format_and_half_precision(tmp_path):
    model = make_model(6, 2, seed=4)
    save_checkpoint(model, tmp_path / "full.ckpt")
    save_checkpoint(model, tmp_path / "half.ckpt", half=True)
    raw = torch.load(tmp_path / "full.ckpt", weights_only=True)
    assert list(raw) == ["state_dict"]
    assert_same_model(load_model(tmp_path / "full.ckpt"), model)
    half = load_model(tmp_path / "half.ckpt")
    assert read_state_dict(tmp_path / "half.ckpt")["segm.weight"].dtype == torch.float16
    assert (tmp_path / "half.ckpt").stat().st_size < 0.6 * (tmp_path / "full.ckpt").stat().st_size
    for key, value in model.state_dict().items():
        expected = value.half().float() if value.is_floating_point() else value
        assert torch.equal(half.state_dict()[key], expected), key


def test_expected_counts_are_checked(make_checkpoint):
    path = make_checkpoint(6, 2)
    with pytest.raises(CheckpointError, match="has 6 classes, expected 40"):
        load_model(path, num_classes=40)
    with pytest.raises(CheckpointError, match="has 2 task heads, expected 3"):
        load_model(path, num_tasks=3)


def _write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def bad_files(tmp_path: Path, good: Path) -> dict[str, tuple[Path, str]]:
    """name -> (file, a regex its error must match)."""
    data = good.read_bytes()
    legacy = tmp_path / "legacy.ckpt"
    torch.save(torch.load(good, weights_only=True), legacy, _use_new_zipfile_serialization=False)
    state = make_model(6, 2).state_dict()
    wrong_keys = OrderedDict(state)
    wrong_keys["extra_head.weight"] = torch.zeros(3)
    del wrong_keys["conv8.weight"]
    resnet_like = {"conv1.weight": torch.zeros(64, 3, 7, 7), "fc.weight": torch.zeros(10, 512),
                   "segm.weight": torch.zeros(6, 256, 3, 3)}
    wrong_shape = OrderedDict(state)
    wrong_shape["conv3.weight"] = torch.zeros(256, 32, 1, 1)
    cases = {
        "missing": (tmp_path / "nope.ckpt", "cannot open weights file"),
        "directory": (tmp_path, "cannot open weights file"),
        "empty": (_write(tmp_path, "empty.ckpt", b""), "is empty"),
        "truncated": (_write(tmp_path, "trunc.ckpt", data[: len(data) // 2]), "corrupted or truncated"),
        "truncated_legacy": (_write(tmp_path, "trunc_legacy.ckpt", legacy.read_bytes()[:5000]),
                             "corrupted or truncated"),
        "corrupted": (_write(tmp_path, "flipped.ckpt", data[:-4096] + bytes(4096)), "corrupted or truncated"),
        "text": (_write(tmp_path, "notes.ckpt", b"these are not weights\n"), "not a PyTorch checkpoint"),
        "png": (_write(tmp_path, "image.ckpt", b"\x89PNG\r\n\x1a\n" + bytes(100)), "not a PyTorch checkpoint"),
        "tensor_only": (tmp_path / "tensor.ckpt", r"holds no state dict \(found Tensor\)"),
        "list": (tmp_path / "list.ckpt", r"holds no state dict \(found list\)"),
        "not_named_tensors": (tmp_path / "numbers.ckpt", "not a state dict: entry 'lr'"),
        "wrong_architecture": (tmp_path / "resnet.ckpt", r"missing keys: layer1\.0\.weight, .* and \d+ more; unexpected keys: conv1\.weight, fc\.weight"),
        "wrong_keys": (tmp_path / "keys.ckpt", r"missing keys: conv8\.weight; unexpected keys: extra_head\.weight"),
        "wrong_shape": (tmp_path / "shape.ckpt", r"conv3\.weight has shape \(256, 32, 1, 1\), expected \(256, 24, 1, 1\)"),
        "no_segmentation_head": (tmp_path / "nohead.ckpt", "no segmentation head"),
    }
    torch.save(torch.zeros(3), cases["tensor_only"][0])
    torch.save([1, 2], cases["list"][0])
    torch.save({"lr": 0.1, "epoch": 3}, cases["not_named_tensors"][0])
    torch.save(resnet_like, cases["wrong_architecture"][0])
    torch.save({"state_dict": wrong_keys}, cases["wrong_keys"][0])
    torch.save({"state_dict": wrong_shape}, cases["wrong_shape"][0])
    torch.save({"fc.weight": torch.zeros(2, 2)}, cases["no_segmentation_head"][0])
    return cases


BAD_CASES = ["missing", "directory", "empty", "truncated", "truncated_legacy", "corrupted", "text",
             "png", "tensor_only", "list", "not_named_tensors", "wrong_architecture", "wrong_keys",
             "wrong_shape", "no_segmentation_head"]


@pytest.mark.parametrize("case", BAD_CASES)
def test_bad_files_give_one_clear_line(tmp_path, make_checkpoint, case):
    path, pattern = bad_files(tmp_path, make_checkpoint(6, 2))[case]
    with pytest.raises(CheckpointError) as info:
        load_model(path)
    message = str(info.value)
    assert "\n" not in message
    assert str(path) in message
    assert info.match(pattern)


class _WritesMarker:
    """Unpickling this would call ``Path.touch`` on the marker: code execution."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


@pytest.mark.parametrize("how", ["torch_save", "plain_pickle"])
def test_pickle_bomb_is_refused_without_running_it(tmp_path, how):
    marker = tmp_path / "code_ran"
    bomb = tmp_path / "bomb.ckpt"
    payload = {"state_dict": make_model(6, 2).state_dict(), "hook": _WritesMarker(marker)}
    if how == "torch_save":
        torch.save(payload, bomb)
        expected = "refusing to load .* it would run code when unpickled"
    else:
        bomb.write_bytes(pickle.dumps(payload))
        expected = "not a PyTorch checkpoint"
    # Sanity: an unrestricted unpickler really would run it.
    pickle.loads(pickle.dumps(_WritesMarker(marker)))
    assert marker.exists()
    os.remove(marker)
    with pytest.raises(CheckpointError, match=expected):
        load_model(bomb)
    assert not marker.exists()
