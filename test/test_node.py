"""hydranet_node as its own process, driven over real ROS 2 topics."""

from __future__ import annotations

import re
import signal
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import import_or_skip, make_model
from hydranet_ros.checkpoint import save_checkpoint
from hydranet_ros.outputs import OUTPUTS, metric_depth
from hydranet_ros.postprocess import CONFIDENCE, PARTS
from hydranet_ros.predictor import Predictor

rclpy = import_or_skip("rclpy", "rclpy is not installed (pip install -e .[ros])")
from rcl_interfaces.msg import Parameter as ParameterMsg  # noqa: E402
from rcl_interfaces.msg import ParameterType, ParameterValue  # noqa: E402
from rcl_interfaces.srv import SetParameters  # noqa: E402
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy  # noqa: E402
from diagnostic_msgs.msg import DiagnosticStatus  # noqa: E402
from sensor_msgs.msg import CameraInfo, CompressedImage, Image  # noqa: E402

from ros_harness import STOP_BOUND_S, NodeProcess, Probe, camera_info, image_msg  # noqa: E402

HEIGHT, WIDTH = 96, 128
ALL_TOPICS = [spec.topic for spec in OUTPUTS] + ["depth/camera_info"]
MAX_DEPTH = 1000.0


def picture(seed: int = 0) -> np.ndarray:
    """A smooth picture with a few shapes, so that labels and depth vary across it."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:HEIGHT, 0:WIDTH]
    rgb = np.stack([x * 255 // WIDTH, y * 255 // HEIGHT, (x + y) * 255 // (WIDTH + HEIGHT)], axis=2)
    rgb = rgb.astype(np.uint8)
    for _ in range(4):
        cx, cy, r = rng.integers(10, WIDTH - 10), rng.integers(10, HEIGHT - 10), rng.integers(5, 20)
        cv2.circle(rgb, (int(cx), int(cy)), int(r), tuple(int(v) for v in rng.integers(0, 255, 3)), -1)
    return rgb


#: The node and the in-process predictor it is compared with run the same engine.
SAME_ENGINE = {"device": "cpu", "backend": "torch", "precision": "fp32"}


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    path = tmp_path_factory.mktemp("weights") / "hydranet_40c_3t.ckpt"
    save_checkpoint(make_model(40, 3, seed=11), path)
    return path


@pytest.fixture(scope="module")
def predictor(checkpoint):
    return Predictor.from_weights(str(checkpoint), **SAME_ENGINE, log=print)


@pytest.fixture(scope="module")
def node(ros, checkpoint, tmp_path_factory):
    proc = NodeProcess(tmp_path_factory.mktemp("node") / "node.log",
                       {"weights": str(checkpoint), **SAME_ENGINE, "max_depth": MAX_DEPTH,
                        "diagnostics_period": 0.5})
    assert proc.wait_for_log("subscribed to"), proc.log()
    yield proc
    code, _ = proc.stop()
    assert code == 0, proc.log()


@pytest.fixture(scope="module")
def probe(ros, node):
    p = Probe()
    assert p.wait_connected(p.image_pub), node.log()
    p.info = camera_info(WIDTH, HEIGHT)
    yield p
    p.destroy()


def decode_image(msg: Image) -> np.ndarray:
    dtype = {"mono8": np.uint8, "mono16": np.uint16, "rgb8": np.uint8, "32FC1": np.float32,
             "32FC3": np.float32}[msg.encoding]
    channels = 3 if msg.encoding in ("rgb8", "32FC3") else 1
    assert msg.step == msg.width * channels * np.dtype(dtype).itemsize
    arr = np.frombuffer(msg.data, dtype=dtype).reshape(msg.height, msg.width, channels)
    return arr[:, :, 0] if channels == 1 else arr


def cloud_array(msg) -> dict[str, np.ndarray]:
    """Fields of a PointCloud2 read by their declared offsets and types (no shared code)."""
    types = {7: "<f4", 6: "<u4"}
    raw = np.frombuffer(msg.data, dtype=np.uint8).reshape(-1, msg.point_step)
    return {f.name: raw[:, f.offset:f.offset + np.dtype(types[f.datatype]).itemsize]
            .copy().view(types[f.datatype])[:, 0].reshape(msg.height, msg.width)
            for f in msg.fields}


def encoded(rgb: np.ndarray, encoding: str) -> np.ndarray:
    return {"rgb8": rgb, "bgr8": rgb[:, :, ::-1], "rgba8": np.dstack([rgb, np.full(rgb.shape[:2], 7, np.uint8)]),
            "bgra8": np.dstack([rgb[:, :, ::-1], np.full(rgb.shape[:2], 200, np.uint8)])}[encoding]


def check_outputs(found: dict, stamp, predictor, expected_rgb: np.ndarray,
                  exact: bool = True) -> None:
    """Every output: header, encoding, size, ranges, and equality with the in-process core
    (not ``exact`` for batches: a batch of two runs other convolution kernels than one)."""
    assert sorted(found) == sorted(ALL_TOPICS)
    for topic, msg in found.items():
        assert msg.header.stamp == stamp and msg.header.frame_id == "camera_optical_frame", topic
    expected = predictor.predict(expected_rgb, parts=frozenset(PARTS + (CONFIDENCE,)))
    images = {t: m for t, m in found.items() if isinstance(m, Image)}
    for topic, msg in images.items():
        assert (msg.height, msg.width) == (HEIGHT, WIDTH), topic
    encodings = {t: m.encoding for t, m in images.items()}
    assert encodings == {"segmentation/labels": "mono8", "segmentation/confidence": "mono8",
                         "segmentation/color": "rgb8",
                         "segmentation/overlay": "rgb8", "depth/image": "32FC1",
                         "depth/color": "rgb8", "normals/image": "32FC3", "normals/color": "rgb8"}
    labels = decode_image(found["segmentation/labels"])
    assert labels.max() < 40 and len(np.unique(labels)) > 1
    assert (labels == expected.labels).mean() >= (1.0 if exact else 0.995)
    confidence = decode_image(found["segmentation/confidence"])
    assert confidence.min() >= 255 // 40  # at least the uniform 1/40
    if exact:
        assert np.array_equal(confidence, expected.confidence)
    else:
        assert np.abs(confidence.astype(int) - expected.confidence).max() <= 3
    depth = decode_image(found["depth/image"])
    valid = np.isfinite(depth)
    assert valid.mean() > 0.5 and (depth[valid] > 0).all() and (depth[valid] <= MAX_DEPTH).all()
    expected_depth = metric_depth(expected.depth, MAX_DEPTH)
    assert np.array_equal(depth, expected_depth, equal_nan=True) if exact else \
        np.allclose(depth, expected_depth, rtol=1e-3, atol=1e-3, equal_nan=True)
    normals = decode_image(found["normals/image"])
    assert np.allclose(np.linalg.norm(normals, axis=2), 1.0, atol=1e-4)
    assert np.allclose(normals, expected.normals, atol=1e-6 if exact else 1e-3)
    info = found["depth/camera_info"]
    assert (info.width, info.height) == (WIDTH, HEIGHT) and info.k[0] == 100.0
    cloud = found["points"]
    assert (cloud.height, cloud.width) == (HEIGHT, WIDTH) and cloud.point_step == 20
    assert [(f.name, f.offset, f.datatype) for f in cloud.fields] == [
        ("x", 0, 7), ("y", 4, 7), ("z", 8, 7), ("rgb", 12, 7), ("label", 16, 6)]
    points = cloud_array(cloud)
    assert np.array_equal(points["z"], depth, equal_nan=True)
    assert np.array_equal(points["label"], labels)
    u = np.arange(WIDTH)[None, :]
    assert np.allclose(points["x"][valid], ((u - WIDTH / 2) / 100.0 * depth)[valid], rtol=1e-5)


@pytest.mark.parametrize("encoding", ["rgb8", "bgr8", "rgba8", "bgra8"])
@pytest.mark.parametrize("pad", [0, 13])
def test_colour_encodings_end_to_end(probe, node, predictor, encoding, pad):
    rgb = picture(1)
    array = encoded(rgb, encoding)
    found = probe.exchange(probe.image_pub, lambda s: image_msg(array, encoding, s, pad=pad),
                           ALL_TOPICS)
    assert found, probe.report() + "\n" + node.log()[-3000:]
    check_outputs(found, found["points"].header.stamp, predictor, rgb)


@pytest.mark.parametrize("encoding, big_endian", [("mono8", False), ("mono16", False),
                                                  ("mono16", True)])
def test_mono_encodings_end_to_end(probe, node, predictor, encoding, big_endian):
    gray = picture(2)[:, :, 1]
    if encoding == "mono16":
        gray16 = gray.astype(np.uint16) * 257 + 100
        array = gray16
        as8 = cv2.convertScaleAbs(gray16, alpha=255.0 / 65535.0)  # cv_bridge's mono16 -> rgb8
    else:
        array, as8 = gray, gray
    expected_rgb = cv2.cvtColor(as8, cv2.COLOR_GRAY2RGB)
    found = probe.exchange(probe.image_pub,
                           lambda s: image_msg(array, encoding, s, pad=3, big_endian=big_endian),
                           ALL_TOPICS)
    assert found, probe.report() + "\n" + node.log()[-3000:]
    check_outputs(found, found["points"].header.stamp, predictor, expected_rgb)


BAD_FRAMES = {
    "encoding": lambda s: image_msg(picture(), "16UC1", s),
    "data": lambda s: _truncated(image_msg(picture(), "rgb8", s)),
    "width/height": lambda s: _empty(s),
    "step": lambda s: _short_step(image_msg(picture(), "rgb8", s)),
}


def _truncated(msg):
    msg.data = bytes(msg.data)[:-50]
    return msg


def _empty(stamp):
    msg = Image(height=0, width=0, encoding="rgb8", step=0)
    msg.header.stamp = stamp
    return msg


def _short_step(msg):
    msg.step = WIDTH  # one byte per pixel for rgb8
    msg.data = bytes(msg.data)[:WIDTH * HEIGHT]
    return msg


@pytest.mark.parametrize("field", list(BAD_FRAMES))
def test_bad_frames_are_skipped_with_a_warning(probe, node, predictor, field):
    before = len(probe.received["segmentation/labels"])
    stamp = probe.stamp()
    probe.image_pub.publish(BAD_FRAMES[field](stamp))
    assert node.wait_for_log(f"skipping frame {stamp.sec}.{stamp.nanosec:09d}: {field}:",
                             timeout=20), node.log()[-2000:]
    assert not probe.outputs_for(stamp, ["segmentation/labels"])
    # the node is alive and the next good frame goes through
    rgb = picture(3)
    found = probe.exchange(probe.image_pub, lambda s: image_msg(rgb, "rgb8", s), ALL_TOPICS)
    assert found and len(probe.received["segmentation/labels"]) > before
    assert node.proc.poll() is None


def uncalibrated_info() -> CameraInfo:
    """What camera_info_manager sends for a camera without a calibration: K and P zeros."""
    info = CameraInfo(width=WIDTH, height=HEIGHT)
    info.header.frame_id = "camera_optical_frame"
    return info


@pytest.mark.parametrize("bad_info, problem", [
    (camera_info(WIDTH * 2, HEIGHT * 2), "camera_info: size 256x192 does not match the "
                                         "image's 128x96"),
    (uncalibrated_info(), "camera_info: camera matrix K has unusable focal lengths fx=0.0"),
])
def test_unusable_camera_info_costs_only_the_point_cloud(probe, node, bad_info, problem):
    """Labels, depth and normals need no camera_info: with one that cannot describe the
    image the frame goes out without the cloud and depth/camera_info, a throttled warning
    says why and /diagnostics counts it; a good camera_info brings the cloud back."""
    without = [t for t in ALL_TOPICS if t not in ("points", "depth/camera_info")]
    probe.info = bad_info
    try:
        for _ in range(20):  # warnings of a field are throttled: one per 5 s
            assert probe.exchange(probe.image_pub, lambda s: image_msg(picture(), "rgb8", s),
                                  without)
            if node.wait_for_log(f"published without the point cloud and depth/camera_info: "
                                 f"{problem}", timeout=1.0):
                break
        else:
            pytest.fail(node.log()[-2000:])
        for _ in range(3):  # frames sent once the node has the bad camera_info
            found = probe.exchange(probe.image_pub, lambda s: image_msg(picture(), "rgb8", s),
                                   without)
            assert found
            stamp = found["segmentation/labels"].header.stamp
            probe.spin_until(lambda: False, timeout=0.3)  # the cloud went out before these
            assert not [m for t in ("points", "depth/camera_info")
                        for m in probe.received[t] if m.header.stamp == stamp]
        probe.diagnostics.clear()  # then a report of a window with such a frame: WARN
        for _ in range(5):
            probe.exchange(probe.image_pub, lambda s: image_msg(picture(), "rgb8", s), without)
            if probe.spin_until(lambda: any(d.status[0].level == DiagnosticStatus.WARN and
                                            "without the point cloud" in d.status[0].message
                                            for d in probe.diagnostics), timeout=1.0):
                break
        warned = [d.status[0] for d in probe.diagnostics
                  if d.status[0].level == DiagnosticStatus.WARN]
        assert warned, [d.status[0].message for d in probe.diagnostics]
        values = {kv.key: kv.value for kv in warned[-1].values}
        assert int(values["frames without point cloud, camera_info unusable"]) >= 4
    finally:
        probe.info = camera_info(WIDTH, HEIGHT)
    assert probe.exchange(probe.image_pub, lambda s: image_msg(picture(), "rgb8", s), ALL_TOPICS)
    assert node.proc.poll() is None


def test_binned_camera_info_gives_the_rectified_intrinsics(probe, node):
    """A 256x192 calibration binned 2x2 describes the 128x96 image; the cloud projects with
    P (the rectified image's, as image_geometry and depth_image_proc do), not K, scaled by
    the binning; depth/camera_info passes the camera's own on."""
    info = camera_info(WIDTH * 2, HEIGHT * 2, fx=300.0, fy=300.0)  # P and K centred
    info.k = [900.0, 0.0, 10.0, 0.0, 900.0, 10.0, 0.0, 0.0, 1.0]  # the raw image's
    info.binning_x = info.binning_y = 2
    probe.info = info
    try:
        def binned() -> dict:
            found = probe.exchange(probe.image_pub, lambda s: image_msg(picture(), "rgb8", s),
                                   ["points", "depth/image", "depth/camera_info"])
            return found if found and found["depth/camera_info"].binning_x == 2 else {}
        found = next((f for f in (binned() for _ in range(10)) if f), None)
        assert found, node.log()[-2000:]
    finally:
        probe.info = camera_info(WIDTH, HEIGHT)
    depth = decode_image(found["depth/image"])
    points = cloud_array(found["points"])
    valid = np.isfinite(depth)
    u = np.arange(WIDTH)[None, :]
    v = np.arange(HEIGHT)[:, None]
    assert valid.mean() > 0.5
    assert np.allclose(points["x"][valid], ((u - WIDTH / 2) / 150.0 * depth)[valid], rtol=1e-5)
    assert np.allclose(points["y"][valid], ((v - HEIGHT / 2) / 150.0 * depth)[valid], rtol=1e-5)
    assert list(found["depth/camera_info"].k) == list(info.k)


def test_each_image_takes_the_camera_info_stamped_as_it(probe, node):
    """Two calibrations on camera_info, the older one's stamp on the image: the image takes
    the camera_info with its own stamp (as image_geometry's consumers pair them), not the
    newest, for its point cloud and depth/camera_info; an image that no camera_info's stamp
    matches takes the newest."""
    topics = ["points", "depth/image", "depth/camera_info"]
    saved, probe.info = probe.info, None  # this test sends its own camera_infos

    def outputs(stamp_of_image: int) -> tuple[dict, list]:
        """Send camera_infos of fx 100 and 300, then an image stamped as the first
        (``stamp_of_image`` 0), the second (1) or neither (2); its outputs, or {}."""
        stamps = [probe.stamp() for _ in range(3)]
        infos = [camera_info(WIDTH, HEIGHT, fx=f, fy=f) for f in (100.0, 300.0)]
        for info, stamp in zip(infos, stamps):
            info.header.stamp = stamp
            probe.info_pub.publish(info)
        probe.spin_until(lambda: False, timeout=0.3)  # both camera_infos are in first
        probe.image_pub.publish(image_msg(picture(), "rgb8", stamps[stamp_of_image]))
        return probe.wait_outputs(stamps[stamp_of_image], topics, timeout=5.0), infos

    try:
        for which, fx in ((0, 100.0), (2, 300.0)):
            found, infos = next(((f, i) for f, i in (outputs(which) for _ in range(6)) if f),
                                ({}, []))
            assert found, node.log()[-2000:]
            assert found["depth/camera_info"].k[0] == fx
            depth = decode_image(found["depth/image"])
            x = cloud_array(found["points"])["x"]
            valid = np.isfinite(depth)
            u = np.arange(WIDTH)[None, :] - WIDTH / 2
            assert valid.mean() > 0.5
            assert np.allclose(x[valid], (u / fx * depth)[valid], rtol=1e-5)
    finally:
        probe.info = saved


def test_rclpys_own_parameters_can_be_set(probe, node):
    """use_sim_time is declared by rclpy, not by the node: setting it at run time (ros2 param
    set, a launch file's parameter reload) must not take the node down."""
    (result,) = set_parameters(probe, {"use_sim_time": False})
    assert result.successful, result.reason
    assert probe.exchange(probe.image_pub, lambda s: image_msg(picture(), "rgb8", s),
                          ["segmentation/labels"])
    assert node.proc.poll() is None and "Traceback" not in node.log()


def set_parameters(probe, values: dict) -> list:
    client = probe.node.create_client(SetParameters, "/hydranet/set_parameters")
    assert client.wait_for_service(timeout_sec=20)
    params = []
    for name, value in values.items():
        pv = ParameterValue()
        if isinstance(value, ParameterValue):  # typed as the caller says
            pv = value
        elif isinstance(value, bool):
            pv.type, pv.bool_value = ParameterType.PARAMETER_BOOL, value
        elif isinstance(value, int):
            pv.type, pv.integer_value = ParameterType.PARAMETER_INTEGER, value
        elif isinstance(value, float):
            pv.type, pv.double_value = ParameterType.PARAMETER_DOUBLE, value
        elif isinstance(value, list):
            pv.type, pv.string_array_value = ParameterType.PARAMETER_STRING_ARRAY, value
        else:
            pv.type, pv.string_value = ParameterType.PARAMETER_STRING, value
        params.append(ParameterMsg(name=name, value=pv))
    future = client.call_async(SetParameters.Request(parameters=params))
    probe.spin_until(future.done, timeout=20)
    probe.node.destroy_client(client)
    return future.result().results


@pytest.mark.parametrize("name, value, reason", [
    ("overlay_alpha", 1.5, "out of range"),
    ("pointcloud_stride", 0, "out of range"),
    ("pointcloud_color", "rainbow", "pointcloud_color must be one of 'image', 'segmentation'"),
    ("pointcloud_exclude_classes", ["unicorn"], "unknown class name(s) unicorn"),
    ("weights", "nyud", "read-only"),
    ("device", "cuda", "read-only"),
])
def test_invalid_parameter_changes_are_rejected(probe, name, value, reason):
    (result,) = set_parameters(probe, {name: value})
    assert not result.successful
    assert reason in result.reason


def test_runtime_parameter_changes_take_effect(probe, node, predictor):
    results = set_parameters(probe, {"pointcloud_stride": 4, "pointcloud_organized": True,
                                     "pointcloud_exclude_classes": ["wall"]})
    assert all(r.successful for r in results), [r.reason for r in results]
    found = probe.exchange(probe.image_pub, lambda s: image_msg(picture(), "rgb8", s), ["points"])
    cloud = found["points"]
    assert (cloud.height, cloud.width) == (HEIGHT // 4, WIDTH // 4)
    points = cloud_array(cloud)
    assert np.isnan(points["z"][points["label"] == 0]).all()
    assert set_parameters(probe, {"pointcloud_organized": False})[0].successful
    found = probe.exchange(probe.image_pub, lambda s: image_msg(picture(), "rgb8", s), ["points"])
    cloud = found["points"]
    assert cloud.height == 1 and cloud.is_dense and not np.isnan(cloud_array(cloud)["z"]).any()
    assert all(r.successful for r in set_parameters(probe, {"inference_width": 64,
                                                             "inference_height": 48}))
    found = probe.exchange(probe.image_pub, lambda s: image_msg(picture(), "rgb8", s),
                           ["segmentation/labels", "depth/image"])
    for msg in found.values():  # the network ran at 64x48, the outputs are at full size
        assert (msg.width, msg.height) == (WIDTH, HEIGHT)
    small = predictor.predict(picture(), (48, 64))
    assert np.array_equal(decode_image(found["segmentation/labels"]), small.labels)
    assert not np.array_equal(small.labels, predictor.predict(picture()).labels)
    assert all(r.successful for r in set_parameters(probe, {"inference_width": 0,
                                                             "inference_height": 0}))
    assert set_parameters(probe, {"publish_overlay": False})[0].successful
    assert probe.spin_until(lambda: probe.node.count_publishers("/segmentation/overlay") == 0)
    assert all(r.successful for r in set_parameters(probe, {
        "pointcloud_stride": 1, "pointcloud_exclude_classes": [], "pointcloud_organized": True,
        "publish_overlay": True}))
    assert probe.exchange(probe.image_pub, lambda s: image_msg(picture(), "rgb8", s), ALL_TOPICS)


def test_values_typed_as_ros2_param_set_types_them(probe, node):
    """``ros2 param set`` types ``50`` as an integer and ``"[]"`` as an empty bool array: the
    node takes them as the declared double and string array (rclpy refused both, "Wrong
    parameter type", and the excluded classes could not be emptied from the command line)."""
    from rcl_interfaces.srv import GetParameters
    empty = ParameterValue(type=ParameterType.PARAMETER_BOOL_ARRAY, bool_array_value=[])
    assert set_parameters(probe, {"pointcloud_exclude_classes": ["wall"]})[0].successful
    results = set_parameters(probe, {"max_depth": 50, "pointcloud_exclude_classes": empty})
    assert all(r.successful for r in results), [r.reason for r in results]
    client = probe.node.create_client(GetParameters, "/hydranet/get_parameters")
    assert client.wait_for_service(timeout_sec=20)
    future = client.call_async(GetParameters.Request(names=["max_depth",
                                                            "pointcloud_exclude_classes"]))
    probe.spin_until(future.done, timeout=20)
    probe.node.destroy_client(client)
    depth, excluded = future.result().values
    assert (depth.type, depth.double_value) == (ParameterType.PARAMETER_DOUBLE, 50.0)
    assert (excluded.type, list(excluded.string_array_value)) == (
        ParameterType.PARAMETER_STRING_ARRAY, [])
    assert set_parameters(probe, {"max_depth": MAX_DEPTH})[0].successful
    (refused,) = set_parameters(probe, {"overlay_alpha": 2})  # converted, then range-checked
    assert not refused.successful and "out of range" in refused.reason


def test_start_up_values_typed_as_yaml_types_them(ros):
    """``max_depth: 50`` in a params file (or ``-p batch_wait:=0``) is an integer for a
    floating-point parameter: taken as declared at start-up as at run time (the node
    refused to start, "expecting type 'DOUBLE'")."""
    from rclpy.node import Node
    from rclpy.parameter import Parameter

    from hydranet_ros.ros.parameters import declare_parameters
    overrides = [Parameter("max_depth", Parameter.Type.INTEGER, 50),
                 Parameter("batch_wait", Parameter.Type.INTEGER, 0)]
    node = Node("typed_at_start", parameter_overrides=overrides)
    try:
        declare_parameters(node)
        for name, value in (("max_depth", 50.0), ("batch_wait", 0.0)):
            param = node.get_parameter(name)
            assert (param.type_, param.value) == (Parameter.Type.DOUBLE, value), name
    finally:
        node.destroy_node()


def test_camera_drivers_see_one_compatible_subscription(probe, node):
    """The node's camera_info subscription a driver's volatile publisher sees is the one it
    can serve: the node subscribes transient local only where a publisher offers that (a
    volatile driver would warn of an incompatible subscriber in its own log)."""
    probe.spin_until(lambda: False, timeout=1.5)  # a few of the node's looks for one
    assert probe.info_pub.get_subscription_count() == 1
    assert "latched (transient local) publisher" not in node.log()


def test_diagnostics_report(probe):
    probe.diagnostics.clear()
    for _ in range(3):
        probe.exchange(probe.image_pub, lambda s: image_msg(picture(), "rgb8", s), ALL_TOPICS)

    def latest() -> dict:
        ours = [d.status[0] for d in probe.diagnostics if d.status[0].name == "/hydranet: HydraNet"]
        return {kv.key: kv.value for kv in ours[-1].values} if ours else {}
    # a bad frame of its own (not one another test sent), until the report counts it
    for _ in range(20):
        bad = image_msg(picture(), "rgb8", probe.stamp())
        bad.encoding = "8UC3"
        probe.image_pub.publish(bad)
        if probe.spin_until(lambda: int(latest().get("rejected: encoding", 0)) > 0, timeout=1.0):
            break
    status = [d.status[0] for d in probe.diagnostics if d.status[0].name == "/hydranet: HydraNet"][-1]
    values = {kv.key: kv.value for kv in status.values}
    assert status.name == "/hydranet: HydraNet" and status.hardware_id == "cpu"
    for key in ("input rate (Hz)", "processed rate (Hz)", "frames dropped", "inference time p50 (ms)",
                "latency receipt to publish p50 (ms)", "latency stamp to publish p50 (ms)"):
        assert key in values
    assert values["device"] == "cpu" and values["backend"] == "torch fp32"
    assert int(values["frames processed"]) >= 3
    assert int(values["frames rejected"]) >= 1
    assert int(values["rejected: encoding"]) >= 1


def test_a_silent_camera_is_reported(probe, node):
    """No image for NO_INPUT_S while the outputs have subscribers (the probe's): /diagnostics
    turns WARN naming the image topic, and one warning (not one per report) says there is a
    publisher that delivered before (not "nothing delivered", which sent users looking for a
    QoS mismatch); the next image ends it, and the log says so."""
    from hydranet_ros.stats import NO_INPUT_S
    probe.diagnostics.clear()
    logged = len(node.log())

    def silent() -> list:
        return [d.status[0] for d in probe.diagnostics
                if d.status[0].level == DiagnosticStatus.WARN and
                f"no image for {NO_INPUT_S:.0f} s or more on /image," in d.status[0].message]
    assert probe.spin_until(lambda: bool(silent()), timeout=NO_INPUT_S + 10), \
        [d.status[0].message for d in probe.diagnostics]
    assert probe.spin_until(lambda: "no image on '/image' for " in node.log()[logged:],
                            timeout=10), node.log()[-2000:]
    # the probe's images came before: the camera stopped, no QoS or transport to blame
    assert "1 publisher(s) there, which delivered" in node.log()[logged:]
    assert "has the camera stopped or stalled" in node.log()[logged:]
    reports = len(silent())
    probe.spin_until(lambda: False, timeout=6.0)  # longer than the node's warning throttle
    assert len(silent()) > reports and node.log()[logged:].count("no image on '/image'") == 1
    assert probe.exchange(probe.image_pub, lambda s: image_msg(picture(), "rgb8", s), ALL_TOPICS)
    probe.diagnostics.clear()
    assert probe.spin_until(lambda: len(probe.diagnostics) >= 2, timeout=10)
    assert not silent(), [d.status[0].message for d in probe.diagnostics]
    assert re.search(r"images on '/image' again, after \d+ s", node.log()[logged:])


def test_camera_names_are_ros_namespaces():
    """Checked before the model loads, in one line: rcl refused such names only when the
    topics were opened, with a traceback."""
    from hydranet_ros.errors import HydraNetError
    from hydranet_ros.ros.node import camera_names
    assert camera_names([]) == [""]
    assert camera_names(["front", "robot/left_2", "_rear/"]) == ["front", "robot/left_2", "_rear"]
    for bad in ("front-left", "2cam", "front.left", "/front", "a//b", "", "front left"):
        with pytest.raises(HydraNetError, match=f"parameter cameras: {re.escape(repr(bad))} is "
                                                "not a relative namespace"):
            camera_names(["ok", bad])
    with pytest.raises(HydraNetError, match="front listed twice"):
        camera_names(["front", "front/"])


def test_label_info_or_one_line_saying_why_not(node):
    """Without vision_msgs (not on PyPI) the node says so once and publishes the rest;
    test_label_info.py checks the message itself with a vision_msgs built for the test."""
    import importlib.util
    line = "vision_msgs is not installed"
    if importlib.util.find_spec("vision_msgs") is None:
        assert node.log().count(line) == 1, node.log()
    else:
        assert line not in node.log()


def test_incompatible_qos_is_logged(probe, node):
    qos = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                     durability=DurabilityPolicy.TRANSIENT_LOCAL)
    sub = probe.node.create_subscription(Image, "depth/color", lambda m: None, qos)
    try:
        probe.spin_until(lambda: "QoS incompatible on '/depth/color'" in node.log(), timeout=20)
        assert "QoS incompatible on '/depth/color': a subscriber requests a durability policy" \
               in node.log()
    finally:
        probe.node.destroy_subscription(sub)


def test_nothing_is_computed_without_subscribers(ros, checkpoint, tmp_path):
    """Images arrive but nobody listens to any output: the network never runs."""
    proc = NodeProcess(tmp_path / "idle.log", {"weights": str(checkpoint), "device": "cpu",
                                                "diagnostics_period": 0.3}, namespace="/idle")
    from diagnostic_msgs.msg import DiagnosticArray
    from rclpy.node import Node
    node = Node("idle_probe", namespace="/idle")
    try:
        assert proc.wait_for_log("subscribed to"), proc.log()
        reports = []
        node.create_subscription(DiagnosticArray, "/diagnostics", reports.append, 10)
        pub = node.create_publisher(Image, "image", 10)

        def spin(seconds, until=lambda: False):
            end = time.monotonic() + seconds
            while time.monotonic() < end and not until():
                rclpy.spin_once(node, timeout_sec=0.05)

        spin(30, until=lambda: pub.get_subscription_count() > 0)

        def statuses() -> list:
            return [r.status[0] for r in reports if r.status[0].name == "/idle/hydranet: HydraNet"]

        def latest() -> dict:
            ours = statuses()
            return {kv.key: kv.value for kv in ours[-1].values} if ours else {}

        def received() -> int:
            return int(latest().get("frames received", 0))
        # keep sending (the first frames may go out before the node has matched us)
        for i in range(50):
            pub.publish(image_msg(picture(), "rgb8", probe_stamp(i)))
            spin(0.3)
            if received() >= 5:
                break
        assert received() >= 5, proc.log()
        assert int(latest()["frames processed"]) == 0, latest()
        assert int(latest()["frames skipped, no subscribers"]) >= 5, latest()
        # frames skipped on purpose are no reason to warn: every report while idle is OK
        from diagnostic_msgs.msg import DiagnosticStatus
        assert all(st.level == DiagnosticStatus.OK for st in statuses()), \
            [(st.level, st.message) for st in statuses()]
        # a report says so when frames were skipped in its window (0.3 s: a window may
        # also see no frame at all, which is plain "ok")
        messages = {st.message for st in statuses()}
        assert "idle: no output has a subscriber" in messages and \
            messages <= {"idle: no output has a subscriber", "ok"}, messages
    finally:
        node.destroy_node()
        proc.stop()


def probe_stamp(i: int):
    from builtin_interfaces.msg import Time
    return Time(sec=5000 + i)


def test_sim_time_runs_on_the_clock_topic(ros, checkpoint, tmp_path):
    """use_sim_time (launch argument use_sim_time:=true, for a bag played with --clock): the
    node's time is /clock's, so its reports are stamped in the recording's time and its
    stamp-to-publish latency is a latency, not the decades between the recording's clock and
    the wall clock; the outputs keep their images' stamps."""
    from builtin_interfaces.msg import Time
    from rosgraph_msgs.msg import Clock

    from hydranet_ros.ros.diagnostics import LONG_RUN_KEY
    proc = NodeProcess(tmp_path / "sim.log", {"weights": str(checkpoint), "device": "cpu",
                                              "use_sim_time": True, "diagnostics_period": 0.5},
                       namespace="/sim")
    probe = Probe("sim_probe", namespace="/sim")
    clock_pub = probe.node.create_publisher(Clock, "/clock", 10)
    began, sim_start = time.monotonic(), 7000.0

    def sim_seconds() -> float:
        return sim_start + time.monotonic() - began

    def sim_now() -> Time:
        sec, nanosec = divmod(int(sim_seconds() * 1e9), 10**9)
        return Time(sec=sec, nanosec=nanosec)

    def reports() -> list[tuple[object, dict]]:
        """The node's reports that have a stamp-to-publish latency, with their values."""
        ours = [(d, {kv.key: kv.value for kv in d.status[0].values}) for d in probe.diagnostics
                if d.status[0].name == "/sim/hydranet: HydraNet"]
        return [(d, values) for d, values in ours if values[LONG_RUN_KEY] != "nan"]

    def tick(seconds: float, until=lambda: False) -> bool:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            clock_pub.publish(Clock(clock=sim_now()))
            rclpy.spin_once(probe.node, timeout_sec=0.02)
            if until():
                return True
        return until()

    try:
        assert proc.wait_for_log("subscribed to"), proc.log()
        assert tick(30, lambda: probe.image_pub.get_subscription_count() > 0), proc.log()
        probe.info = camera_info(WIDTH, HEIGHT)
        stamps = []
        for _ in range(40):  # a frame now and then until two have come back whole
            stamp = sim_now()
            probe.info.header.stamp = stamp
            probe.info_pub.publish(probe.info)
            probe.image_pub.publish(image_msg(picture(), "rgb8", stamp))
            if tick(1.0, lambda s=stamp: len(probe.outputs_for(s, ["points"])) == 1):
                stamps.append(stamp)
            if len(stamps) == 2:
                break
        assert len(stamps) == 2, probe.report() + proc.log()[-2000:]
        assert tick(10, lambda: bool(reports())), proc.log()[-2000:]
        report, values = reports()[-1]
        reported_s = report.header.stamp.sec + report.header.stamp.nanosec * 1e-9
        now_s = sim_seconds()
        assert sim_start <= reported_s <= now_s, (reported_s, now_s)  # the clock's, not wall
        assert 0 < float(values[LONG_RUN_KEY]) < 10_000, values
    finally:
        probe.destroy()
        code, _ = proc.stop()
    assert code == 0, proc.log()


def test_compressed_transport(ros, checkpoint, predictor, tmp_path):
    """image_transport: compressed, with the image remapped as the launch file remaps it
    (image:=...): the node takes <that topic>/compressed, as image_transport names it."""
    proc = NodeProcess(tmp_path / "compressed.log",
                       {"weights": str(checkpoint), **SAME_ENGINE, "image_transport": "compressed",
                        "max_depth": MAX_DEPTH}, namespace="/compressed",
                       remaps={"image": "cam/image_rect", "camera_info": "cam/camera_info"})
    probe = Probe("compressed_probe", namespace="/compressed", image_topic="cam/image_rect",
                  info_topic="cam/camera_info")
    try:
        assert proc.wait_for_log("subscribed to '/compressed/cam/image_rect/compressed'"), \
            proc.log()
        assert probe.wait_connected(probe.compressed_pub), proc.log()
        probe.info = camera_info(WIDTH, HEIGHT)
        rgb = picture(4)
        png = cv2.imencode(".png", rgb[:, :, ::-1])[1].tobytes()

        def make(stamp):
            msg = CompressedImage(format="png", data=png)
            msg.header.stamp, msg.header.frame_id = stamp, "camera_optical_frame"
            return msg
        found = probe.exchange(probe.compressed_pub, make, ALL_TOPICS)
        assert found, proc.log()
        check_outputs(found, found["points"].header.stamp, predictor, rgb)
        stamp = probe.stamp()
        bad = make(stamp)
        bad.data = png[:40]
        probe.compressed_pub.publish(bad)
        assert proc.wait_for_log(f"skipping frame {stamp.sec}.{stamp.nanosec:09d}: data: 40 bytes "
                                 "are not a decodable JPEG/PNG image", timeout=20), proc.log()
    finally:
        probe.destroy()
        proc.stop()


@pytest.mark.parametrize("weights, message", [
    ("/nonexistent/w.ckpt", "weights '/nonexistent/w.ckpt' is neither an existing file nor an official preset"),
    ("BROKEN", "is corrupted or truncated"),
])
def test_bad_weights_at_startup_exit_with_one_line(ros, tmp_path, weights, message):
    if weights == "BROKEN":
        weights = str(tmp_path / "broken.ckpt")
        (tmp_path / "broken.ckpt").write_bytes(b"PK\x03\x04" + bytes(100))
    proc = NodeProcess(tmp_path / "bad.log", {"weights": weights})
    code = proc.proc.wait(60)
    log = proc.log()
    assert code == 1
    assert message in log
    assert "Traceback" not in log
    assert len([line for line in log.splitlines() if "ERROR" in line]) == 1


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_signals_stop_the_node_quickly_and_cleanly(ros, checkpoint, tmp_path, sig):
    # the reference engine: slow enough (hundreds of ms at 320x240) that the signal lands
    # while the network runs
    proc = NodeProcess(tmp_path / "sig.log", {"weights": str(checkpoint), "device": "cpu",
                                              "backend": "reference"},
                       namespace=f"/sig{int(sig)}")
    probe = Probe("sig_probe", namespace=f"/sig{int(sig)}")
    try:
        assert proc.wait_for_log("subscribed to"), proc.log()
        assert probe.wait_connected(probe.image_pub)
        big = np.zeros((240, 320, 3), dtype=np.uint8)
        assert probe.exchange(probe.image_pub, lambda s: image_msg(big, "rgb8", s),
                              ["segmentation/labels"]), probe.report() + proc.log()
        # keep it busy, then interrupt while it works
        for _ in range(3):
            probe.image_pub.publish(image_msg(big, "rgb8", probe.stamp()))
            probe.spin_until(lambda: False, timeout=0.1)
        code, seconds = proc.stop(sig)
    finally:
        probe.destroy()
    assert code == 0, proc.log()
    assert seconds < STOP_BOUND_S, f"took {seconds:.2f} s to exit\n" + proc.log()
    assert "Traceback" not in proc.log()


def test_cameras_share_one_batch(ros, checkpoint, predictor, tmp_path):
    """Two cameras: frames published together come back on each camera's own topics, equal
    to the single-image results, and the network ran them as one call."""
    proc = NodeProcess(tmp_path / "multi.log",
                       {"weights": str(checkpoint), **SAME_ENGINE, "cameras": ["front", "left"],
                        "batch_wait": 0.5, "max_depth": MAX_DEPTH, "diagnostics_period": 0.5},
                       namespace="/multi")
    probes = {name: Probe(f"{name}_probe", namespace=f"/multi/{name}") for name in ("front", "left")}
    pictures = {"front": picture(5), "left": picture(6)}
    try:
        assert proc.wait_for_log("subscribed to '/multi/left/image'"), proc.log()
        for probe in probes.values():
            assert probe.wait_connected(probe.image_pub), proc.log()
            probe.info = camera_info(WIDTH, HEIGHT)
        found: dict = {}
        for _ in range(10):  # resend while discovery settles
            stamp = probes["front"].stamp()
            for name, probe in probes.items():
                probe.info.header.stamp = stamp
                probe.info_pub.publish(probe.info)
                probe.image_pub.publish(image_msg(pictures[name], "rgb8", stamp))
            found = {name: probe.wait_outputs(stamp, ALL_TOPICS, timeout=3)
                     for name, probe in probes.items()}
            if all(len(f) == len(ALL_TOPICS) for f in found.values()):
                break
        for name, outputs in found.items():
            check_outputs(outputs, stamp, predictor, pictures[name], exact=False)
        front = probes["front"]
        assert front.spin_until(lambda: any(
            float(kv.value) > 1.0 for d in front.diagnostics for kv in d.status[0].values
            if kv.key == "frames per network call"), timeout=10), proc.log()
    finally:
        for probe in probes.values():
            probe.destroy()
        proc.stop()


def one_frame(checkpoint, tmp_path, in_place: bool, rgb: np.ndarray, measured: bool = False,
              threads: int = 1, gpu_like: bool = True) -> tuple[dict, str]:
    """Every output of one frame from ``gpu_like_node.py`` (outputs made as CUDA engines make
    them, on the CPU) or, unless ``gpu_like``, from hydranet_node with a CPU engine, with
    publish_in_place and publish_threads as given, the engine chosen on the first frame if
    ``measured``; and the node's log."""
    name = f"{'gpu_like' if gpu_like else 'cpu'}_{str(in_place).lower()}" \
           f"{'_measured' if measured else ''}"
    command = [sys.executable, str(Path(__file__).with_name("gpu_like_node.py"))] \
        if gpu_like else None
    proc = NodeProcess(tmp_path / f"{name}.log",
                       {"weights": str(checkpoint), **SAME_ENGINE, "max_depth": MAX_DEPTH,
                        "output_reliability": "reliable", "publish_in_place": in_place,
                        "publish_threads": threads},
                       namespace=f"/{name}", env={"GPU_LIKE_MEASURED": "1" if measured else "0"},
                       command=command)
    probe = Probe(f"{name}_probe", namespace=f"/{name}")
    try:
        assert proc.wait_for_log("subscribed to"), proc.log()
        assert probe.wait_connected(probe.image_pub), proc.log()
        probe.info = camera_info(WIDTH, HEIGHT)
        found = probe.exchange(probe.image_pub, lambda s: image_msg(rgb, "rgb8", s), ALL_TOPICS)
        assert found, probe.report() + proc.log()
    finally:
        probe.destroy()
        code, _ = proc.stop()
    assert code == 0 and "Traceback" not in proc.log(), proc.log()
    return found, proc.log()


def in_place_as_rclpy(checkpoint, tmp_path, rgb: np.ndarray, gpu_like: bool,
                      threads: int = 1) -> tuple[dict, str]:
    """One frame with publish_in_place on and off (``one_frame``): every output arrives
    both ways, the same messages field for field. The in-place messages and that run's log."""
    in_place, log = one_frame(checkpoint, tmp_path, True, rgb, threads=threads,
                              gpu_like=gpu_like)
    as_messages, other_log = one_frame(checkpoint, tmp_path, False, rgb, gpu_like=gpu_like)
    assert "serialized in place" not in other_log, other_log
    assert sorted(in_place) == sorted(as_messages) == sorted(ALL_TOPICS)
    for topic, msg in in_place.items():
        other = as_messages[topic]
        other.header.stamp = msg.header.stamp  # each run's frame has its own stamp
        assert msg == other, topic
    return in_place, log


def test_gpu_like_outputs_published_in_place_are_rclpys_messages(ros, checkpoint, predictor,
                                                                 tmp_path):
    """Outputs returned as CUDA engines return them (packed, with room around each): the node
    publishes them serialized in place, from 2 threads (``publish_threads``), and a
    subscriber in another process gets the same messages, field for field, as with
    publish_in_place off (rclpy's messages, one after another), and the core's results
    within the device-output path's guards (its upsampling is torch's)."""
    rgb = picture(5)
    in_place, log = in_place_as_rclpy(checkpoint, tmp_path, rgb, gpu_like=True, threads=2)
    assert "publishing outputs serialized in place, from the buffer they came back from the " \
           "GPU in, from 2 threads at once" in log, log
    # and they are the core's, within the device-output path's own guards (test_engines)
    expected = predictor.predict(rgb)
    labels = decode_image(in_place["segmentation/labels"])
    assert (labels == expected.labels).mean() >= 0.995
    depth = decode_image(in_place["depth/image"])
    core = metric_depth(expected.depth, MAX_DEPTH)
    both = np.isfinite(depth) & np.isfinite(core)
    assert both.mean() > 0.5 and np.median(np.abs(depth[both] - core[both]) / core[both]) <= 0.01


def test_cpu_outputs_published_in_place_are_rclpys_messages(ros, checkpoint, predictor,
                                                             tmp_path):
    """A CPU engine's outputs, made by the host path with room around each
    (``message_room.py``): published serialized in place, a subscriber in another process
    gets the same messages, field for field, as with publish_in_place off, and the core's
    results exactly."""
    rgb = picture(7)
    in_place, log = in_place_as_rclpy(checkpoint, tmp_path, rgb, gpu_like=False)
    assert "publishing outputs serialized in place, from the arrays they were made in\n" in log
    expected = predictor.predict(rgb)
    assert np.array_equal(decode_image(in_place["segmentation/labels"]), expected.labels)


def test_gpu_like_node_measures_its_precision_on_the_first_frame(ros, checkpoint, predictor,
                                                                tmp_path):
    """As precision auto runs on a GPU (``engines/fastest.py``): the node starts with the
    choice open, its first frame times the candidates (here the optimised engine and the
    reference, both making the outputs as CUDA engines do) and keeps the faster, says so in
    one line, and publishes that frame whole, in place, with the core's results."""
    rgb = picture(6)
    found, log = one_frame(checkpoint, tmp_path, True, rgb, measured=True)
    assert "reference/torch on cpu, precision measured on the first frame (reference fp32, " \
           "torch fp32)" in log, log
    chosen = [line for line in log.splitlines() if "inference precision: " in line]
    assert len(chosen) == 1, log
    assert "inference precision: torch fp32 on cpu (measured fastest on the first frame: " \
           "torch fp32" in chosen[0], log  # the optimised engine, several times faster here
    assert "reference fp32" in chosen[0]
    assert "publishing outputs serialized in place, from the buffer they came back from the " \
           "GPU in\n" in log, log  # publish_threads 1 (the default): one after another
    assert sorted(found) == sorted(ALL_TOPICS)
    expected = predictor.predict(rgb)
    labels = decode_image(found["segmentation/labels"])
    assert (labels == expected.labels).mean() >= 0.995


def test_bad_cameras_parameter_is_one_error_line(ros, checkpoint, tmp_path):
    proc = NodeProcess(tmp_path / "badcams.log", {"weights": str(checkpoint), "device": "cpu",
                                                  "cameras": ["front", "front"]})
    code, _ = proc.stop(timeout=30) if proc.proc.wait(30) is None else (proc.proc.returncode, 0)
    assert code == 1 and "cameras: front listed twice" in proc.log(), proc.log()


def test_pipelined_node_publishes_whole_frames_in_stamp_order(ros, checkpoint, predictor, tmp_path):
    """pipeline enabled (the GPU default), here on the CPU: a burst of frames faster than the node
    runs them; every frame it publishes has every output, each output's stamps only go up,
    the results are the core's, and it still stops cleanly."""
    namespace = "/piped"
    proc = NodeProcess(tmp_path / "piped.log",
                       {"weights": str(checkpoint), **SAME_ENGINE, "pipeline": "enabled",
                        "max_depth": MAX_DEPTH, "output_reliability": "reliable"},
                       namespace=namespace)
    probe = Probe("piped_probe", namespace=namespace)
    pictures = [picture(seed) for seed in range(3)]
    try:
        assert proc.wait_for_log("pipelined"), proc.log()
        # a CPU engine's outputs, made with room for their messages, go in place too
        assert "publishing outputs serialized in place, from the arrays they were made in" \
            in proc.log(), proc.log()
        assert probe.wait_connected(probe.image_pub), proc.log()
        probe.info = camera_info(WIDTH, HEIGHT)
        first = probe.exchange(probe.image_pub, lambda s: image_msg(pictures[0], "rgb8", s),
                               ALL_TOPICS)
        assert first, probe.report() + proc.log()
        for topic in ALL_TOPICS:
            probe.received[topic].clear()
        sent = []
        for i in range(15):
            stamp = probe.stamp()
            probe.info.header.stamp = stamp
            probe.info_pub.publish(probe.info)
            probe.image_pub.publish(image_msg(pictures[i % 3], "rgb8", stamp))
            sent.append((stamp, pictures[i % 3]))
            # 2 ms apart: faster than the node runs a frame even on a quiet machine (at 20 ms
            # apart it kept up with all 15 once)
            probe.spin_until(lambda: False, timeout=0.002)
        last_stamp, last_picture = sent[-1]
        # the newest frame always wins, so the last one sent is published
        found = probe.wait_outputs(last_stamp, ALL_TOPICS, timeout=60)
        probe.spin_until(lambda: False, timeout=1.0)  # anything still in flight
    finally:
        probe.destroy()
        code, _ = proc.stop()
    check_outputs(found, last_stamp, predictor, last_picture)
    order = [stamp for stamp, _ in sent]
    published = {topic: [order.index(m.header.stamp) for m in probe.received[topic]]
                 for topic in ALL_TOPICS}
    for topic, indices in published.items():
        assert indices == sorted(set(indices)), f"{topic} out of order: {indices}"
    assert all(indices == published["points"] for indices in published.values()), published
    assert 2 <= len(published["points"]) < len(sent), published["points"]
    assert code == 0 and "Traceback" not in proc.log(), proc.log()
