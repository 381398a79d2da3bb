"""Property-based fuzzing (hypothesis) of every input path in-process: image, compressed
image and camera-info decoding, and the post-processing and output code behind them. The
only exception that may come out is ImageError, one line naming the field."""

from __future__ import annotations

from types import SimpleNamespace

import cv2
import numpy as np

from conftest import import_or_skip

hypothesis = import_or_skip("hypothesis", "pip install hypothesis (in .[test])")
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from hydranet_ros.outputs import OUTPUTS, OutputSettings, compute_outputs  # noqa: E402
from hydranet_ros.postprocess import CONFIDENCE, PARTS, postprocess  # noqa: E402
from hydranet_ros.presets import get_preset  # noqa: E402

ros = import_or_skip("sensor_msgs", "the conversions need the ROS message wheels")
from hydranet_ros.ros.conversions import (ENCODINGS as INPUTS, ImageError,  # noqa: E402
                                          camera_intrinsics, compressed_to_rgb, image_to_rgb)

#: Bounded so that CI stays fast, derandomised so that a failure reproduces.
FUZZ = settings(max_examples=400, deadline=None, derandomize=True)
FIELDS = {"encoding", "width/height", "step", "data", "format", "camera_info"}
ENCODINGS = list(INPUTS) + ["8UC3", "16UC1", "32FC1", "yuv422", "bayer_rggb8", "rgb16", "",
                            "RGB8", "mono8 "]
MAX_BYTES = 1 << 20


def decoded(decode, *args):
    """``decode(*args)``, or None after checking that it refused with one line naming the
    field: the only way any input may fail."""
    try:
        return decode(*args)
    except ImageError as exc:
        assert exc.field in FIELDS
        assert "\n" not in str(exc) and str(exc).startswith(exc.field)
        return None


@st.composite
def image_messages(draw):
    encoding = draw(st.sampled_from(ENCODINGS) | st.text(max_size=12))
    width = draw(st.sampled_from([0, 1, 2, 3, 7, 33]) | st.integers(0, 1 << 17))
    height = draw(st.sampled_from([0, 1, 2, 5, 31]) | st.integers(0, 1 << 17))
    pixel = draw(st.sampled_from([1, 2, 3, 4, 6]))
    step = draw(st.sampled_from([width * pixel, width * pixel + 3, max(0, width * pixel - 1)])
                | st.integers(0, 1 << 20))
    exact = step * height if step * height <= MAX_BYTES else None
    size = draw(st.sampled_from([s for s in (exact, (exact or 0) + 1, max(0, (exact or 1) - 1))
                                 if s is not None]) | st.integers(0, 4096))
    data = draw(st.binary(min_size=min(size, 64), max_size=min(size, 64)))
    data = (data * (size // max(1, len(data)) + 1))[:size] if data else bytes(size)
    return SimpleNamespace(encoding=encoding, width=width, height=height, step=step,
                           is_bigendian=draw(st.booleans()), data=data)


@FUZZ
@given(image_messages())
def test_image_decoding_only_rejects_with_a_named_field(msg):
    rgb = decoded(image_to_rgb, msg)
    if rgb is not None:
        assert rgb.shape == (msg.height, msg.width, 3) and rgb.dtype == np.uint8


def _encoded(kind: str) -> bytes:
    picture = np.random.default_rng(0).integers(0, 255, (24, 32, 3), dtype=np.uint8)
    return cv2.imencode(kind, picture)[1].tobytes()


VALID = {"jpeg": _encoded(".jpg"), "png": _encoded(".png")}


@st.composite
def compressed_messages(draw):
    kind = draw(st.sampled_from(["jpeg", "png", "random"]))
    if kind == "random":
        data = draw(st.binary(max_size=2048))
    else:
        full = VALID[kind]
        cut = draw(st.integers(0, len(full)))
        data = bytearray(full[:cut])
        for _ in range(draw(st.integers(0, 3))):  # flip a few bytes
            if data:
                data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
        data = bytes(data)
    fmt = draw(st.sampled_from(["jpeg", "png", "rgb8; jpeg compressed bgr8",
                                "16UC1; compressedDepth", ""]) | st.text(max_size=20))
    return SimpleNamespace(format=fmt, data=data)


@FUZZ
@given(compressed_messages())
def test_compressed_decoding_only_rejects_with_a_named_field(msg):
    rgb = decoded(compressed_to_rgb, msg)
    if rgb is not None:
        assert rgb.ndim == 3 and rgb.shape[2] == 3 and rgb.dtype == np.uint8


special = st.sampled_from([0.0, -1.0, float("nan"), float("inf"), -float("inf"), 1e-300, 1e300])
numbers = special | st.floats(-1e6, 1e6, allow_nan=False)


@FUZZ
@given(k=st.lists(numbers, max_size=12), p=st.lists(numbers, max_size=14),
       width=st.integers(0, 5000), height=st.integers(0, 5000),
       binning=st.tuples(st.integers(0, 4), st.integers(0, 4)),
       roi=st.tuples(*[st.integers(0, 5000)] * 4) | st.just((0, 0, 0, 0)),
       image_w=st.integers(1, 5000), image_h=st.integers(1, 5000))
def test_camera_info_only_rejects_with_a_named_field(k, p, width, height, binning, roi,
                                                     image_w, image_h):
    x_offset, y_offset, roi_w, roi_h = roi
    info = SimpleNamespace(k=k, p=p, width=width, height=height, binning_x=binning[0],
                           binning_y=binning[1], roi=SimpleNamespace(
                               x_offset=x_offset, y_offset=y_offset, width=roi_w, height=roi_h))
    intr = decoded(camera_intrinsics, info, image_w, image_h)
    if intr is not None:
        as_float32 = np.array([intr.fx, intr.fy, intr.cx, intr.cy], dtype=np.float32)
        assert np.isfinite(as_float32).all() and (as_float32[:2] > 0).all()
        full = (roi_w, roi_h) if roi_w and roi_h else (width, height)
        assert (intr.width, intr.height) == (image_w, image_h) == (
            full[0] // max(1, binning[0]), full[1] // max(1, binning[1]))


raw_values = st.sampled_from([0.0, float("nan"), float("inf"), -float("inf"), 1e30, -1e-30]) \
    | st.floats(-100, 100)


@FUZZ
@given(classes=st.integers(1, 40), h=st.integers(1, 12), w=st.integers(1, 12),
       out_h=st.integers(1, 48), out_w=st.integers(1, 48), fill=raw_values,
       seed=st.integers(0, 2**16), tasks=st.sampled_from([2, 3]))
def test_postprocessing_and_outputs_never_raise(classes, h, w, out_h, out_w, fill, seed, tasks):
    """Raw network outputs with any values (NaN, infinities, huge, all equal) and any sizes
    go through post-processing, every output view and the point cloud."""
    rng = np.random.default_rng(seed)
    raw = [rng.standard_normal((c, h, w)).astype(np.float32) for c in (classes, 1, 3)[:tasks]]
    for array in raw:
        mask = rng.random(array.shape) < 0.2
        array[mask] = np.float32(fill)
    with np.errstate(all="ignore"):
        pred = postprocess(tuple(raw), (out_h, out_w), frozenset(PARTS + (CONFIDENCE,)))
        assert pred.labels.shape == (out_h, out_w) and int(pred.labels.max()) < classes
        assert pred.confidence.shape == (out_h, out_w) and pred.confidence.dtype == np.uint8
        preset = get_preset("nyud_three" if classes > 6 else "kitti")
        if classes > len(preset.class_names):
            return
        rgb = rng.integers(0, 256, (out_h, out_w, 3), dtype=np.uint8)
        from hydranet_ros.geometry import Intrinsics
        intr = Intrinsics(10.0, 10.0, out_w / 2, out_h / 2, out_w, out_h)
        wanted = {spec.name for spec in OUTPUTS if tasks == 3 or "normals" not in spec.needs}
        out = compute_outputs(rgb, pred, preset, OutputSettings(), wanted, intr)
    assert set(out) == wanted
    depth = out["depth"]
    far = np.isposinf(depth)  # REP 117: beyond the preset's range
    assert np.isnan(depth[~np.isfinite(depth) & ~far]).all()
    assert (depth[np.isfinite(depth)] > 0).all()
