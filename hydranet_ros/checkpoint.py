"""Reading and writing HydraNet checkpoints in the official release's format.

Every load goes through ``torch.load(weights_only=True)``: a checkpoint is data, and one that
would need to run code while unpickling is refused, not trusted. Whatever goes wrong with a
file becomes one ``CheckpointError`` line that names the file and the problem.
"""

from __future__ import annotations

import os
import warnings
from collections import OrderedDict
from pathlib import Path

import torch

from .errors import HydraNetError
from .model import HydraNet

ZIP_MAGIC = b"PK\x03\x04"
#: ``torch.save``'s legacy (pre-1.6, e.g. the official PyTorch 0.4 files) format starts with
#: a pickled magic number.
LEGACY_MAGIC = b"\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19"
MODULE_PREFIX = "module."
MAX_LISTED_KEYS = 6


class CheckpointError(HydraNetError):
    pass


def _unsafe_reason(message: str) -> str | None:
    """The line of a weights-only refusal that says which object was refused, if any."""
    if "Weights only load failed" not in message:
        return None
    for line in message.splitlines():
        if "Unsupported" in line or "GLOBAL" in line:
            return line.strip()
    return "it holds objects other than tensors and plain containers"


def _read_file(path: Path) -> object:
    try:
        with open(path, "rb") as f:
            head = f.read(len(LEGACY_MAGIC))
    except OSError as exc:
        raise CheckpointError(f"cannot open weights file {path}: {exc.strerror or exc}") from None
    if not head:
        raise CheckpointError(f"weights file {path} is empty")
    looks_like_torch = head.startswith(ZIP_MAGIC) or head == LEGACY_MAGIC
    try:
        with warnings.catch_warnings():  # torch's pickle-protocol notes mean nothing to users
            warnings.simplefilter("ignore", UserWarning)
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for bad bytes; all mean the same here
        unsafe = _unsafe_reason(str(exc))
        if unsafe and looks_like_torch:
            raise CheckpointError(
                f"refusing to load {path}: it would run code when unpickled ({unsafe}); "
                "only plain tensor checkpoints are accepted") from None
        if not looks_like_torch:
            raise CheckpointError(f"{path} is not a PyTorch checkpoint") from None
        first_line = (str(exc).splitlines() or [type(exc).__name__])[0][:120]
        raise CheckpointError(
            f"weights file {path} is corrupted or truncated ({first_line or type(exc).__name__})"
        ) from None


def _unwrap(obj: object, path: Path) -> dict[str, torch.Tensor]:
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not obj:
        raise CheckpointError(f"{path} holds no state dict (found {type(obj).__name__})")
    bad = [k for k, v in obj.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
    if bad:
        raise CheckpointError(f"{path} is not a state dict: entry {bad[0]!r} is not a named tensor")
    if all(k.startswith(MODULE_PREFIX) for k in obj):
        obj = {k[len(MODULE_PREFIX):]: v for k, v in obj.items()}
    # A fresh dict on purpose: the loader below fills what very old files lack, so no
    # version metadata from the file is needed (or wanted) on the way in.
    return OrderedDict(obj)


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The tensors of a checkpoint file, bare or wrapped in ``{'state_dict': ...}``."""
    path = Path(path)
    return _unwrap(_read_file(path), path)


def infer_architecture(state: dict[str, torch.Tensor], source: str = "checkpoint") -> tuple[int, int]:
    """(num_classes, num_tasks) from the head tensors."""
    segm = state.get("segm.weight")
    if segm is None or segm.dim() != 4:
        raise CheckpointError(f"{source} is not a HydraNet checkpoint: it has no segmentation "
                              "head ('segm.weight')")
    return int(segm.shape[0]), 3 if "normal.weight" in state else 2


def _describe_keys(keys: list[str]) -> str:
    shown = ", ".join(keys[:MAX_LISTED_KEYS])
    more = len(keys) - MAX_LISTED_KEYS
    return shown + (f" and {more} more" if more > 0 else "")


def _fill_batchnorm_counters(state: dict[str, torch.Tensor], model: HydraNet) -> None:
    """Add ``num_batches_tracked`` where the file predates it (the official PyTorch 0.4 files)."""
    for key, value in model.state_dict().items():
        if key.endswith("num_batches_tracked") and key not in state:
            state[key] = torch.zeros_like(value)


def _check_keys(state: dict[str, torch.Tensor], model: HydraNet, source: str) -> None:
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    problems = []
    if missing:
        problems.append(f"missing keys: {_describe_keys(missing)}")
    if unexpected:
        problems.append(f"unexpected keys: {_describe_keys(unexpected)}")
    if problems:
        raise CheckpointError(f"{source} does not match the HydraNet architecture; "
                              + "; ".join(problems))
    for key, value in expected.items():
        if state[key].shape != value.shape:
            raise CheckpointError(
                f"{source} does not match the HydraNet architecture; {key} has shape "
                f"{tuple(state[key].shape)}, expected {tuple(value.shape)}")


def model_from_state_dict(state: dict[str, torch.Tensor], num_classes: int | None = None,
                          num_tasks: int | None = None, source: str = "checkpoint") -> HydraNet:
    """A HydraNet in eval mode holding ``state`` (loaded strictly)."""
    found_classes, found_tasks = infer_architecture(state, source)
    if num_classes is not None and num_classes != found_classes:
        raise CheckpointError(f"{source} has {found_classes} classes, expected {num_classes}")
    if num_tasks is not None and num_tasks != found_tasks:
        raise CheckpointError(f"{source} has {found_tasks} task heads, expected {num_tasks}")
    model = HydraNet(found_classes, found_tasks)
    state = OrderedDict(state)
    _fill_batchnorm_counters(state, model)
    _check_keys(state, model, source)
    model.load_state_dict(state, strict=True)
    return model.eval()


def load_model(path: str | os.PathLike, num_classes: int | None = None,
               num_tasks: int | None = None) -> HydraNet:
    """Load a checkpoint file into a new HydraNet; class and task counts default to the file's."""
    return model_from_state_dict(read_state_dict(path), num_classes, num_tasks, source=str(path))


def save_checkpoint(model: HydraNet, path: str | os.PathLike, half: bool = False,
                    extra: dict | None = None) -> None:
    """Write ``{'state_dict': ...}`` as the release does, atomically (temporary file + rename).

    ``half`` stores floating tensors as float16 (half the size; loading converts back).
    ``extra`` adds plain entries (numbers, strings, tensors) next to the state dict.
    """
    path = Path(path)
    state = OrderedDict(
        (k, v.detach().half() if half and v.is_floating_point() else v.detach())
        for k, v in model.state_dict().items())
    payload = {"state_dict": state, **(extra or {})}
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        torch.save(payload, tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
