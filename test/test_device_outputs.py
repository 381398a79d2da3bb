"""The outputs CUDA engines make on the GPU (torch, ``device_outputs.py``), run here on the
CPU and compared byte for byte with the host path every CPU engine uses."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hydranet_ros.checkpoint import load_model
from hydranet_ros.device_outputs import DeviceOutputs, download, normals_colors, prediction_tensors
from hydranet_ros.engines import build_engine
from hydranet_ros.evaluation import held_out_frame
from hydranet_ros.geometry import Intrinsics
from hydranet_ros.outputs import OUTPUTS, OutputSettings, compute_outputs
from hydranet_ros.postprocess import CONFIDENCE, PARTS
from hydranet_ros.presets import get_preset
from hydranet_ros.synthetic.render import SyntheticWorld
from hydranet_ros.visualize import colorize_normals
from hydranet_ros.weights import resolve

CPU = torch.device("cpu")
ALL = {spec.name for spec in OUTPUTS}


@pytest.fixture(scope="module")
def frames():
    """Held-out frames of two streets through the bundled model, with their intrinsics."""
    preset = get_preset("synthetic")
    engine = build_engine(load_model(resolve("synthetic")), preset, "reference", CPU)
    world = SyntheticWorld(160, 120)
    result = []
    for k in (2, 40):
        frame = held_out_frame(world, k)
        pred = engine.predict([frame.rgb], frame.rgb.shape[:2], frozenset(PARTS + (CONFIDENCE,)))[0]
        intr = frame.intrinsics
        result.append((frame.rgb, pred, Intrinsics(intr.fx, intr.fy, intr.cx, intr.cy,
                                                   intr.width, intr.height)))
    return preset, result


SETTINGS = [
    OutputSettings(),
    OutputSettings(overlay_alpha=0.3, max_depth=25.0, pointcloud_stride=3,
                   pointcloud_color="segmentation", pointcloud_exclude_classes=("sky", "car")),
    OutputSettings(pointcloud_organized=False, pointcloud_max_depth=15.0, overlay_alpha=1.0),
]


@pytest.mark.parametrize("settings", SETTINGS, ids=["defaults", "stride-excluded", "compact"])
def test_device_outputs_are_the_host_bytes(frames, settings):
    preset, items = frames
    maker = DeviceOutputs(preset, CPU)
    for rgb, pred, intr in items:
        host = compute_outputs(rgb, pred, preset, settings, ALL, intr)
        device = download(maker.compute(torch.from_numpy(rgb), **prediction_tensors(pred, CPU),
                                        settings=settings, wanted=ALL, intrinsics=intr))
        assert sorted(device) == sorted(host)
        assert device.cloud_is_dense is (not np.isnan(host["points"]["z"]).any())
        for name, array in host.items():
            got = device[name]
            assert got.dtype == array.dtype and got.shape == array.shape, name
            assert got.tobytes() == np.ascontiguousarray(array).tobytes(), name


def test_depth_out_of_range_and_without_estimate_alike(frames):
    """REP 117 on both paths, byte for byte: +Inf beyond max_depth or where the network gave
    +Inf, NaN where it gave no estimate (NaN, zero); neither becomes a point of the cloud,
    also with no depth limit at all (a preset without a range)."""
    from dataclasses import replace
    preset, items = frames
    rgb, pred, intr = items[0]
    depth = pred.depth.copy()
    depth[0, :4] = [np.nan, 0.0, np.inf, 1e6]
    depth[1, :2] = [3.0, 90.0]
    pred = replace(pred, depth=depth)
    for limits in (preset, replace(preset, depth_range=None)):
        maker = DeviceOutputs(limits, CPU)
        host = compute_outputs(rgb, pred, limits, OutputSettings(), ALL, intr)
        device = download(maker.compute(torch.from_numpy(rgb), **prediction_tensors(pred, CPU),
                                        settings=OutputSettings(), wanted=ALL, intrinsics=intr))
        for name in ("depth", "points", "depth_color"):
            assert device[name].tobytes() == host[name].tobytes(), name
        published, z = host["depth"], host["points"]["z"]
        assert np.isnan(published[0, :2]).all() and published[0, 2] == np.inf
        assert published[1, 0] == 3.0 and z[1, 0] == 3.0
        assert np.isnan(z[0, :3]).all()  # no point where there is no finite depth
        far = [np.inf] * 2 if limits.depth_range else [1e6, 90.0]  # beyond 80 m, or kept
        assert [published[0, 3], published[1, 1]] == far
        assert np.isnan(z[0, 3]) == bool(limits.depth_range)


def test_nothing_wanted_is_nothing_made(frames):
    preset, items = frames
    rgb, pred, intr = items[0]
    made = DeviceOutputs(preset, CPU).compute(torch.from_numpy(rgb), **prediction_tensors(pred, CPU),
                                              settings=OutputSettings(), wanted={"labels"})
    assert set(made) == {"labels"}
    assert download({}) == {}


def test_the_cuda_paths_outputs_through_the_predictor(frames):
    """The whole device path of the torch engine (network, post-processing, outputs on the
    device, one download), run on the CPU: what a CUDA node publishes, checked here."""
    from hydranet_ros.engines.torch_engine import TorchEngine
    from hydranet_ros.predictor import Predictor
    preset, items = frames
    model = load_model(resolve("synthetic"))
    on_device = Predictor(TorchEngine(model, preset, CPU, optimize=False,
                                      device_postprocess=True), preset)
    host = Predictor(build_engine(model, preset, "reference", CPU), preset)
    assert on_device.engine.outputs_on_device and not host.engine.outputs_on_device
    images = [rgb for rgb, _, _ in items]
    wanted = [ALL, {"labels", "points"}]
    intrinsics = [intr for _, _, intr in items]
    got, seconds = on_device.outputs_many(images, [None, None], wanted, OutputSettings(),
                                          intrinsics)
    expected, _ = host.outputs_many(images, [None, None], wanted, OutputSettings(), intrinsics)
    assert seconds > 0 and [set(g) for g in got] == [set(e) for e in expected]
    for g, e in zip(got, expected):
        # torch's bicubic upsampling differs from OpenCV's in the last bits: labels agree on
        # nearly every pixel, the cloud's labels follow the labels
        assert (g["labels"] == e["labels"]).mean() >= 0.995
        assert g["points"].dtype == e["points"].dtype and g["points"].shape == e["points"].shape
        assert np.array_equal(g["points"]["label"], g["labels"])
    assert np.abs(got[0]["normals"] - expected[0]["normals"]).max() < 0.05


def test_normal_colours_on_the_device_are_the_host_bytes_nan_included():
    normals = np.array([[[np.nan, np.nan, np.nan], [0, 0, -1], [0.6, -0.8, 0.0]]], np.float32)
    device = normals_colors(torch.from_numpy(normals)).numpy()
    assert device.tobytes() == colorize_normals(normals).tobytes()
    assert device[0, 0].tolist() == [0, 0, 0]
