"""INT8 for Intel and AMD CPUs: OpenVINO IR quantised after training with NNCF.

Every convolution (and pooling) runs on the CPU's integer units (VNNI, AMX; on a CPU with
AVX2 alone the 8-bit products saturate and cost accuracy, and the engine says so:
``openvino_engine.cpu_has_vnni``) with scales calibrated on unlabelled frames: by default
held-out synthetic frames (right for the bundled weights, which were trained on that world),
else a folder of the user's own images, which any other weights need. Calibration frames
are resized to the network's input size, exactly as the engine resizes live frames.
"""

from __future__ import annotations

import hashlib
import logging
import os
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ..errors import HydraNetError
from ..images import IMAGE_SUFFIXES, read_rgb
from ..model import HydraNet
from ..presets import Preset
from .base import EngineError, Log, normalize_nchw, resize_image
from .export import cached_entry, cached_export, model_digest
from .openvino_runtime import shared_core

#: ``calibration`` value for held-out synthetic frames (the bundled weights' default).
SYNTHETIC = "synthetic"
#: Frames calibrated on: NNCF's default subset size.
CALIBRATION_FRAMES = 300
#: Held-out frames from this index on calibrate (evaluation uses the first ones).
CALIBRATION_FIRST_FRAME = 2500
#: Changes with the quantisation recipe in quantize_ir, so that older entries are not reused.
QUANTISATION_VERSION = "v3"
#: Every so many calibration frames re-fit the outputs' biases (NNCF's full bias correction
#: uses a fifth of its frames too).
BIAS_FRAMES_EVERY = 5


def default_calibration(preset: Preset) -> str | None:
    """Held-out synthetic frames for the bundled weights' preset; others need a folder."""
    return SYNTHETIC if preset.name == "synthetic" else None


def _folder_images(folder: Path) -> list[Path]:
    if not folder.is_dir():
        raise EngineError(f"calibration folder {folder} does not exist")
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)


def calibration_id(calibration: str) -> str:
    """A short fingerprint of the calibration data, part of the cache key: the folder's
    image names and contents (so new images mean a new calibration)."""
    if calibration == SYNTHETIC:
        return f"{SYNTHETIC}{CALIBRATION_FRAMES}"
    digest = hashlib.sha256()
    for path in _folder_images(Path(calibration))[:CALIBRATION_FRAMES]:
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return "images" + digest.hexdigest()[:12]


def calibration_frames(calibration: str, size: tuple[int, int],
                       progress: Callable[[int, int], None] | None = None) -> list[np.ndarray]:
    """Up to CALIBRATION_FRAMES uint8 RGB frames at ``size`` (height, width)."""
    if calibration == SYNTHETIC:
        from ..evaluation import held_out_frame
        from ..synthetic.render import SyntheticWorld
        world = SyntheticWorld(size[1], size[0])
        frames = []
        for k in range(CALIBRATION_FRAMES):
            frames.append(held_out_frame(world, CALIBRATION_FIRST_FRAME + k).rgb)
            if progress is not None:
                progress(k + 1, CALIBRATION_FRAMES)
        return frames
    folder = Path(calibration)
    paths = _folder_images(folder)[:CALIBRATION_FRAMES]
    frames = []
    for k, path in enumerate(paths):
        try:
            frames.append(resize_image(read_rgb(path), size))
        except HydraNetError:  # an unreadable file is skipped, the rest count
            pass
        if progress is not None:
            progress(k + 1, len(paths))
    if not frames:
        raise EngineError(f"calibration folder {folder} has no readable images "
                          f"({', '.join(sorted(IMAGE_SUFFIXES))})")
    return frames


def check_calibration(calibration: str | None, preset: Preset) -> str:
    """The calibration source to use, checked up front (before any export): a folder must
    hold at least one readable image. One clear error otherwise."""
    calibration = calibration or default_calibration(preset)
    if calibration is None:
        raise EngineError(f"int8 needs calibration images for weights of preset "
                          f"'{preset.name}': give a folder of your camera's images "
                          "(--calibration DIR, node parameter calibration_images)")
    if calibration == SYNTHETIC:
        return calibration
    for path in _folder_images(Path(calibration)):
        try:
            read_rgb(path)
            return calibration
        except HydraNetError:
            continue
    raise EngineError(f"calibration folder {calibration} has no readable images "
                      f"({', '.join(IMAGE_SUFFIXES)})")


def cached_int8(model: HydraNet, preset: Preset, size: tuple[int, int], batch: int,
                calibration: str, log: Log | None = None) -> Path:
    """The INT8 IR for this input shape and calibration, from the cache or made now (the fp32
    IR first, then NNCF on the calibration frames), verified like every export."""
    fp32 = cached_export(model, "openvino", size, batch, "fp32", log)
    key = (f"{model_digest(model)}_{size[0]}x{size[1]}_b{batch}_int8{QUANTISATION_VERSION}_"
           f"{calibration_id(calibration)}")
    source = "held-out synthetic frames" if calibration == SYNTHETIC else f"images in {calibration}"

    def produce(path: Path) -> None:
        from tqdm import tqdm
        with tqdm(desc="int8 calibration frames", unit="frame", file=sys.stderr,
                  mininterval=1.0) as bar:
            def advance(done: int, total: int) -> None:
                bar.total = total
                bar.update(done - bar.n)
            frames = calibration_frames(calibration, size, advance)
        batches = [np.stack(frames[i:i + batch]) for i in range(0, len(frames), batch)
                   if len(frames[i:i + batch]) == batch] if batch > 1 else frames
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=path.parent, prefix=".int8-") as tmp:
            staged = Path(tmp) / "model.xml"
            quantize_ir(fp32, staged, batches, preset, log)
            os.replace(staged.with_suffix(".bin"), path.with_suffix(".bin"))
            os.replace(staged, path)
    return cached_entry(key, ".xml", f"calibrating the model for int8 at {batch}x{size[1]}x"
                        f"{size[0]} on {source} and quantising it with NNCF", produce, log)


def quantize_ir(fp32_ir: Path, out: Path, frames: list[np.ndarray], preset: Preset,
                log: Log | None = None) -> None:
    """Write the INT8 IR of ``fp32_ir`` to ``out`` (and its .bin), calibrated on ``frames``.

    Every layer in int8 (NNCF's performance preset, fast bias correction), then the heads'
    output biases re-fitted (``correct_output_biases``). Quantised this way the depth came out
    about 0.1 m (1.5 %) too far on held-out frames, 0.0096 of AbsRel against a guard of 0.005;
    recipe v2 kept the depth head in floating point instead, and that float island (its input
    converted back from int8, its own reorders) cost about 4 ms at 640x480. NNCF's full bias
    correction also fixes the depth, but keeps every activation of 60 frames in memory (15 GB
    at 320x240, killed for lack of memory at 640x480 on this 24 GB machine).
    """
    try:
        import nncf
        import openvino as ov
    except ImportError as exc:
        raise EngineError(f"int8 needs the 'nncf' package ({exc}); pip install nncf") from None
    if log is not None:
        log(f"quantising to int8 with NNCF on {len(frames)} calibration frames")
    logging.getLogger("nncf").setLevel(logging.WARNING)  # its per-layer notes are not news
    def network_input(rgb: np.ndarray) -> np.ndarray:
        return normalize_nchw(rgb if rgb.ndim == 4 else rgb[None], preset)
    core = shared_core()
    quantized = nncf.quantize(core.read_model(str(fp32_ir)), nncf.Dataset(frames, network_input),
                              subset_size=len(frames), preset=nncf.QuantizationPreset.PERFORMANCE)
    correct_output_biases(core, core.read_model(str(fp32_ir)), quantized,
                          [network_input(rgb) for rgb in frames[::BIAS_FRAMES_EVERY]], log)
    ov.save_model(quantized, str(out))


def correct_output_biases(core, float_model, quantized, inputs: list[np.ndarray],
                          log: Log | None = None) -> None:
    """Shift each output's bias (the constant added after each head's last convolution) by
    the mean difference between the float and the quantised outputs on ``inputs``, per
    channel: bias correction for the outputs, whose errors nothing after them can absorb.
    Both models run in f32 (the int8 layers aside), so the result does not depend on the CPU."""
    from openvino import opset13
    config = {"INFERENCE_PRECISION_HINT": "f32"}
    reference = core.compile_model(float_model, "CPU", config)
    approximate = core.compile_model(quantized, "CPU", config)
    names = [output.get_any_name() for output in float_model.outputs]
    shift = {name: 0.0 for name in names}
    for x in inputs:
        want, got = reference(x), approximate(x)
        for name in names:
            shift[name] = shift[name] + np.mean(want[name] - got[name], axis=(0, 2, 3))
    for output in quantized.outputs:
        name = output.get_any_name()
        add = output.get_node().input_value(0).get_node()
        if name not in shift or add.get_type_name() != "Add" \
                or add.input_value(1).get_node().get_type_name() != "Constant":
            if log is not None:
                log(f"int8: output {name} has no bias to correct, left as quantised")
            continue
        bias = add.input_value(1).get_node().get_data()
        corrected = bias + (shift[name] / len(inputs)).reshape(bias.shape).astype(bias.dtype)
        add.input(1).replace_source_output(opset13.constant(corrected).output(0))
