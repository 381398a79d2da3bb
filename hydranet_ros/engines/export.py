"""Exporting the network to ONNX and OpenVINO IR, cached so each shape is exported once.

Exported models take the normalised image as ``image`` (N, 3, H, W) float32 and return
``segmentation``, ``depth`` (and ``normals``) at 1/4 resolution, exactly the PyTorch model's
raw outputs; shapes are static, which lets the runtimes plan memory and pick kernels once.
The cache is keyed by a digest of the weights, the input size, the batch size and precision,
and each entry is checked against the SHA-256 recorded when it was written before it is used.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path

import torch

from ..model import HydraNet
from ..weights import cache_dir
from .base import EngineError, Log

FORMATS = ("onnx", "openvino")
OPSET = 17
SUFFIX = {"onnx": ".onnx", "openvino": ".xml"}
#: Beside each cached model file: ``<file>.sha256.json``, the SHA-256 of its files.
MANIFEST_SUFFIX = ".sha256.json"


def output_names(num_tasks: int) -> list[str]:
    return ["segmentation", "depth", "normals"][:num_tasks]


def model_digest(model: torch.nn.Module) -> str:
    """A short fingerprint of the weights: names, shapes and values of every tensor."""
    digest = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        digest.update(f"{name}:{tuple(tensor.shape)}:{tensor.dtype}".encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def engine_cache_dir() -> Path:
    return cache_dir() / "engines"


def export_onnx(model: HydraNet, path: Path, size: tuple[int, int], batch: int = 1) -> None:
    """Trace ``model`` at (batch, 3, *size) into an ONNX file at ``path``."""
    dummy = torch.zeros(batch, 3, *size)
    with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
        warnings.simplefilter("ignore")
        source = model if next(model.parameters()).is_cpu else _cpu_copy(model)
        torch.onnx.export(source.eval(), (dummy,), str(path), dynamo=False,
                          opset_version=OPSET, input_names=["image"],
                          output_names=output_names(model.num_tasks), do_constant_folding=True)


def _cpu_copy(model: HydraNet) -> HydraNet:
    copy = HydraNet(model.num_classes, model.num_tasks)
    copy.load_state_dict({k: v.cpu() for k, v in model.state_dict().items()})
    return copy.eval()


def export(model: HydraNet, fmt: str, path: Path, size: tuple[int, int], batch: int = 1,
           precision: str = "fp32") -> None:
    """Write the model in ``fmt`` to ``path`` (for IR also the .bin beside it).

    Written into a temporary folder first and moved into place, so an interrupted export
    never leaves a half-written model where a later run would find it.
    """
    if fmt not in FORMATS:
        raise EngineError(f"unknown export format '{fmt}' (use {' or '.join(FORMATS)})")
    if precision not in ("fp32", "fp16") or (fmt == "onnx" and precision != "fp32"):
        raise EngineError(f"{fmt} export supports precision "
                          f"{'fp32' if fmt == 'onnx' else 'fp32 or fp16'}, not {precision}")
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=path.parent, prefix=".export-") as tmp:
        onnx_path = Path(tmp) / "model.onnx"
        export_onnx(model, onnx_path, size, batch)
        if fmt == "onnx":
            os.replace(onnx_path, path)
            return
        ir_path = Path(tmp) / "model.xml"
        convert_to_ir(onnx_path, ir_path, precision == "fp16")
        os.replace(ir_path.with_suffix(".bin"), path.with_suffix(".bin"))
        os.replace(ir_path, path)


#: Run by ``convert_to_ir`` in a process of its own: ONNX file, IR file, "1" for fp16 weights.
_CONVERT = """
import sys
try:
    import openvino as ov
except ImportError as exc:
    sys.exit(f"OpenVINO export needs the 'openvino' package ({exc})")
ov.save_model(ov.convert_model(sys.argv[1]), sys.argv[2], compress_to_fp16=sys.argv[3] == "1")
"""


def convert_to_ir(onnx_path: Path, ir_path: Path, fp16: bool) -> None:
    """OpenVINO's model conversion of the ONNX file, in a fresh Python process. The
    conversion reports usage (OpenVINO's telemetry, unless the user opted out with
    ``opt_in_out --opt_out``) from a forked child; forked from a process with other threads
    (a node's DDS threads, Ray's gRPC threads in the tests), that child can deadlock in the
    resolver, ignore the SIGTERM meant to end it (rclpy handles SIGTERM) and hold the whole
    process at exit. A process of its own has no such threads and ends with the conversion."""
    result = subprocess.run([sys.executable, "-c", _CONVERT, str(onnx_path), str(ir_path),
                             "1" if fp16 else "0"], capture_output=True, text=True)
    if result.returncode != 0 or not ir_path.exists():
        lines = (result.stderr or result.stdout).strip().splitlines() or ["no output"]
        raise EngineError(f"OpenVINO conversion of the ONNX model failed: {lines[-1]}")


def file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _model_files(path: Path) -> list[Path]:
    return [path, path.with_suffix(".bin")] if path.suffix == ".xml" else [path]


def manifest_path(path: Path) -> Path:
    """The manifest of the model at ``path``: one per model file, since an entry's folder holds
    the ONNX model and the IR made from the same weights and shape (with one manifest for the
    folder, each export recorded itself over the other, and the two re-exported in turns)."""
    return path.with_name(path.name + MANIFEST_SUFFIX)


def _cache_is_intact(path: Path) -> bool:
    """Whether the cached files are exactly those written: a manifest beside them holds
    their SHA-256, so a truncated, stale or tampered export is rebuilt, never used."""
    manifest = manifest_path(path)
    try:
        expected = json.loads(manifest.read_text())
        return all(expected.get(f.name) == file_digest(f) for f in _model_files(path))
    except (OSError, ValueError, AttributeError):
        return False


def cached_entry(key: str, suffix: str, what: str, produce: Callable[[Path], None],
                 log: Log | None = None) -> Path:
    """The cached model ``key`` (``model<suffix>`` in its own folder), made by
    ``produce(path)`` when it is missing or fails verification, then recorded in a manifest."""
    path = engine_cache_dir() / key / f"model{suffix}"
    if _cache_is_intact(path):
        return path
    if log is not None:
        stale = " (the cached copy failed verification)" if path.exists() else ""
        log(f"{what}{stale} (once; cached in {path.parent})")
    try:
        produce(path)
    except EngineError:
        raise
    except Exception as exc:  # noqa: BLE001  the exporters raise many kinds
        raise EngineError(f"{what} failed: {type(exc).__name__}: {exc}") from None
    # Files are replaced atomically, so processes exporting the same entry at once (two
    # nodes starting together) each leave a complete, consistent entry.
    manifest = {f.name: file_digest(f) for f in _model_files(path)}
    staged = path.parent / f".{manifest_path(path).name}.{os.getpid()}"
    staged.write_text(json.dumps(manifest, indent=1) + "\n")
    os.replace(staged, manifest_path(path))
    return path


def cached_export(model: HydraNet, fmt: str, size: tuple[int, int], batch: int,
                  precision: str = "fp32", log: Log | None = None) -> Path:
    """The exported model for this shape, from the cache or exported into it now.

    ``precision`` is the one it will run at; only fp16 changes the stored weights (bf16 and
    fp32 share fp32 weights and differ in the runtime's setting), but each has its own entry.
    """
    key = f"{model_digest(model)}_{size[0]}x{size[1]}_b{batch}_{precision}"
    return cached_entry(
        key, SUFFIX[fmt], f"exporting the model to {fmt} for {batch}x{size[1]}x{size[0]} input",
        lambda path: export(model, fmt, path, size, batch,
                            "fp16" if precision == "fp16" else "fp32"), log)
