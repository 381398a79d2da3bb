"""Image messages <-> arrays, against OpenCV doing what cv_bridge does for each encoding."""

from __future__ import annotations

import array as array_module
from dataclasses import astuple

import cv2
import numpy as np
import pytest

from conftest import import_or_skip

import_or_skip("sensor_msgs", "ROS 2 message packages are not installed (pip install -e .[ros])")
from sensor_msgs.msg import (CameraInfo, CompressedImage, Image, PointCloud2,  # noqa: E402
                             PointField)

from hydranet_ros.geometry import POINT_DTYPE, Intrinsics  # noqa: E402
from hydranet_ros.outputs import (OUTPUT_BY_NAME, PUBLISH_ORDER,  # noqa: E402
                                  FrameOutputs, OutputSettings, start_outputs)
from hydranet_ros.postprocess import Prediction  # noqa: E402
from hydranet_ros.presets import get_preset  # noqa: E402
from hydranet_ros.ros import conversions  # noqa: E402
from hydranet_ros.ros.conversions import (ImageError, camera_info_for,  # noqa: E402
                                          camera_intrinsics, compressed_to_rgb,
                                          frame_message_stream, frame_messages,
                                          image_message, image_to_rgb, pointcloud_message,
                                          takes_buffers)
from ros_harness import image_msg  # noqa: E402

RNG = np.random.default_rng(0)
RGB = RNG.integers(0, 256, (7, 9, 3), dtype=np.uint8)


def stamp():
    from builtin_interfaces.msg import Time
    return Time(sec=1, nanosec=2)


#: cv_bridge's conversion of each encoding to rgb8 (its getConversionCode: Bayer patterns
#: by OpenCV's names for them, yuv422 as UYVY and yuv422_yuy2 as YUYV).
CV_BRIDGE_CODES = {
    "rgb8": None, "bgr8": cv2.COLOR_BGR2RGB, "rgba8": cv2.COLOR_RGBA2RGB,
    "bgra8": cv2.COLOR_BGRA2RGB, "mono8": cv2.COLOR_GRAY2RGB, "mono16": cv2.COLOR_GRAY2RGB,
    "rgb16": None, "bgr16": cv2.COLOR_BGR2RGB, "rgba16": cv2.COLOR_RGBA2RGB,
    "bgra16": cv2.COLOR_BGRA2RGB, "yuv422": cv2.COLOR_YUV2RGB_UYVY,
    "yuv422_yuy2": cv2.COLOR_YUV2RGB_YUYV, "bayer_rggb8": cv2.COLOR_BayerBG2RGB,
    "bayer_bggr8": cv2.COLOR_BayerRG2RGB, "bayer_gbrg8": cv2.COLOR_BayerGR2RGB,
    "bayer_grbg8": cv2.COLOR_BayerGB2RGB, "bayer_rggb16": cv2.COLOR_BayerBG2RGB,
}


def cv_bridge_rgb8(array: np.ndarray, encoding: str) -> np.ndarray:
    """What cv_bridge's imgmsg_to_cv2(msg, 'rgb8') computes, step by step with OpenCV
    (16-bit values converted, then scaled to 8 bits)."""
    code = CV_BRIDGE_CODES[encoding]
    rgb = array.copy() if code is None else cv2.cvtColor(array, code)
    return cv2.convertScaleAbs(rgb, alpha=255.0 / 65535.0) if rgb.dtype == np.uint16 else rgb


def _alpha(channels: np.ndarray) -> np.ndarray:
    return np.dstack([channels, RNG.integers(0, 256, channels.shape[:2], dtype=channels.dtype)])


RGB16 = RNG.integers(0, 65536, (7, 9, 3), dtype=np.uint16)
SOURCES = {
    "rgb8": RGB,
    "bgr8": RGB[:, :, ::-1].copy(),
    "rgba8": _alpha(RGB),
    "bgra8": _alpha(RGB[:, :, ::-1]),
    "mono8": RGB[:, :, 0].copy(),
    "mono16": RNG.integers(0, 65536, (7, 9), dtype=np.uint16),
    "rgb16": RGB16,
    "bgr16": RGB16[:, :, ::-1].copy(),
    "rgba16": _alpha(RGB16),
    "bgra16": _alpha(RGB16[:, :, ::-1]),
    "yuv422": RNG.integers(0, 256, (7, 10, 2), dtype=np.uint8),  # pixels in pairs
    "yuv422_yuy2": RNG.integers(0, 256, (7, 10, 2), dtype=np.uint8),
    **{f"bayer_{p}8": RGB[:, :, 1].copy() for p in ("rggb", "bggr", "gbrg", "grbg")},
    "bayer_rggb16": RNG.integers(0, 65536, (7, 9), dtype=np.uint16),
}


@pytest.mark.parametrize("encoding", list(SOURCES))
@pytest.mark.parametrize("pad", [0, 5])
@pytest.mark.parametrize("big_endian", [False, True])
def test_decoding_agrees_with_cv_bridge(encoding, pad, big_endian):
    array = SOURCES[encoding]
    msg = image_msg(array, encoding, stamp(), pad=pad, big_endian=big_endian)
    rgb = image_to_rgb(msg)
    assert rgb.shape == (*array.shape[:2], 3) and rgb.dtype == np.uint8
    assert np.array_equal(rgb, cv_bridge_rgb8(array, encoding))


def test_a_bayer_mosaic_is_demosaiced_into_its_colours():
    """Each pattern's mosaic of a smooth picture comes back as that picture (away from the
    border), so the patterns are not mixed up (a wrong one swaps red and blue)."""
    y, x = np.mgrid[0:32, 0:32]
    picture = np.dstack([x * 6, 40 + y * 5, 220 - x * 3]).astype(np.uint8)
    picture = cv2.GaussianBlur(picture, (5, 5), 2)
    for pattern in ("rggb", "bggr", "gbrg", "grbg"):
        mosaic = np.empty((32, 32), np.uint8)
        for k, (dy, dx) in enumerate(((0, 0), (0, 1), (1, 0), (1, 1))):
            mosaic[dy::2, dx::2] = picture[dy::2, dx::2, "rgb".index(pattern[k])]
        rgb = image_to_rgb(image_msg(mosaic, f"bayer_{pattern}8", stamp()))
        error = np.abs(rgb.astype(int) - picture)[3:-3, 3:-3]
        assert error.max() <= 12 and error.mean() < 3, (pattern, error.max(), error.mean())


def test_an_odd_width_of_paired_pixels_is_one_line():
    msg = image_msg(np.zeros((4, 7, 2), np.uint8), "yuv422", stamp())
    with pytest.raises(ImageError, match="width/height: yuv422 pairs pixels: its width must "
                                         "be even, not 7"):
        image_to_rgb(msg)


def test_a_compressed_bayer_mosaic_is_demosaiced():
    """image_transport's compressed Bayer ("bayer_rggb8; png compressed bayer_rggb8") was
    decoded as a grey picture."""
    mosaic = SOURCES["bayer_rggb8"]
    for bits in (8, 16):
        data = mosaic if bits == 8 else mosaic.astype(np.uint16) * 257
        msg = CompressedImage(format=f"bayer_rggb{bits}; png compressed bayer_rggb{bits}")
        msg.data = cv2.imencode(".png", data)[1].tobytes()
        expected = cv_bridge_rgb8(data, f"bayer_rggb{bits}")
        assert np.array_equal(compressed_to_rgb(msg), expected), bits


@pytest.mark.parametrize("pad", [0, 3])
def test_rgb8_is_decoded_without_a_copy(pad):
    msg = image_msg(SOURCES["rgb8"], "rgb8", stamp(), pad=pad)
    assert np.shares_memory(image_to_rgb(msg), np.frombuffer(msg.data, dtype=np.uint8))


@pytest.mark.parametrize("mutate, field, text", [
    (lambda m: setattr(m, "encoding", "16UC1"), "encoding", "'16UC1' is not supported"),
    (lambda m: setattr(m, "encoding", "8UC3"), "encoding", "(use rgb8 or bgr8 for colour)"),
    (lambda m: setattr(m, "data", bytes(m.data)[:-1]), "data", "188 bytes, expected step x height = 27 x 7 = 189"),
    (lambda m: setattr(m, "data", bytes(m.data) + b"x"), "data", "190 bytes"),
    (lambda m: setattr(m, "step", 20), "step", "20 bytes is less than width x bytes per pixel (9 x 3)"),
    (lambda m: (setattr(m, "width", 0), setattr(m, "height", 0)), "width/height", "image is empty (0x0)"),
    (lambda m: setattr(m, "height", 1 << 20), "width/height", "exceeds"),
])
def test_bad_messages_name_the_field(mutate, field, text):
    msg = image_msg(RGB, "rgb8", stamp())
    mutate(msg)
    with pytest.raises(ImageError) as info:
        image_to_rgb(msg)
    assert info.value.field == field
    assert str(info.value).startswith(f"{field}: ")
    assert text in str(info.value)


@pytest.mark.parametrize("ext", [".png", ".jpg"])
def test_compressed(ext):
    ok, data = cv2.imencode(ext, RGB[:, :, ::-1])
    rgb = compressed_to_rgb(CompressedImage(format=ext[1:], data=data.tobytes()))
    expected = cv2.imdecode(data, cv2.IMREAD_COLOR)[:, :, ::-1]
    assert np.array_equal(rgb, expected)
    if ext == ".png":
        assert np.array_equal(rgb, RGB)


def test_bad_compressed():
    with pytest.raises(ImageError, match="data: 3 bytes are not a decodable JPEG/PNG image"):
        compressed_to_rgb(CompressedImage(format="jpeg", data=b"abc"))
    with pytest.raises(ImageError, match="format: 'png; compressedDepth' is a depth transport"):
        compressed_to_rgb(CompressedImage(format="png; compressedDepth", data=b"abc"))


@pytest.mark.parametrize("array, encoding", [
    (np.zeros((4, 5), np.uint8), "mono8"), (np.zeros((4, 5), np.uint16), "mono16"),
    (np.zeros((4, 5, 3), np.uint8), "rgb8"), (np.zeros((4, 5), np.float32), "32FC1"),
    (np.zeros((4, 5, 3), np.float32), "32FC3"),
])
def test_output_messages(array, encoding):
    array = array + np.arange(array.size, dtype=array.dtype).reshape(array.shape)
    msg = image_message(Image().header, array)
    assert (msg.encoding, msg.height, msg.width) == (encoding, 4, 5)
    assert msg.step == 5 * array.itemsize * (1 if array.ndim == 2 else 3)
    assert bytes(msg.data) == array.tobytes() and not msg.is_bigendian


def test_pointcloud_message_layout():
    cloud = np.zeros((2, 3), dtype=POINT_DTYPE)
    cloud["x"] = np.arange(6).reshape(2, 3)
    cloud["label"] = 7
    msg = pointcloud_message(Image().header, cloud)
    assert (msg.height, msg.width, msg.point_step, msg.row_step) == (2, 3, 20, 60)
    # label as PCL's PointXYZRGBL declares it (uint32): pcl::fromROSMsg matches type and name
    assert [(f.name, f.offset, f.datatype, f.count) for f in msg.fields] == [
        ("x", 0, PointField.FLOAT32, 1), ("y", 4, PointField.FLOAT32, 1),
        ("z", 8, PointField.FLOAT32, 1), ("rgb", 12, PointField.FLOAT32, 1),
        ("label", 16, PointField.UINT32, 1)]
    assert msg.is_dense
    assert bytes(msg.data) == cloud.tobytes()
    cloud["z"][0, 0] = np.nan
    assert not pointcloud_message(Image().header, cloud).is_dense


def _serialized_with_a_copy(msg) -> bytes:
    """What rclpy publishes for ``msg`` with its data as the array.array rclpy expects."""
    from rclpy.serialization import serialize_message
    copy = type(msg)()
    for name in msg.get_fields_and_field_types():
        setattr(copy, name, getattr(msg, name))
    copy.data = array_module.array("B", bytes(msg.data))
    return serialize_message(copy)


def test_outputs_are_published_from_their_arrays_without_a_copy():
    """The messages hold views of the output arrays, and rclpy serialises them as the same
    bytes as the array.array copies it expects."""
    from rclpy.serialization import serialize_message
    cloud = np.zeros((3, 4), dtype=POINT_DTYPE)
    cloud["x"] = RNG.random((3, 4))
    cloud["label"] = 5
    depth = RNG.random((5, 6)).astype(np.float32)
    header = Image().header
    header.stamp, header.frame_id = stamp(), "camera"
    for array, msg in ((RGB, image_message(header, RGB)), (depth, image_message(header, depth)),
                       (cloud, pointcloud_message(header, cloud))):
        assert np.shares_memory(msg.data, array)
        assert serialize_message(msg) == _serialized_with_a_copy(msg)
    assert takes_buffers(Image) and takes_buffers(PointCloud2)


def test_classes_that_refuse_buffers_get_copies(monkeypatch):
    class NotRos:
        __slots__ = ("_data",)

    assert not takes_buffers(NotRos) and not takes_buffers(CameraInfo)
    monkeypatch.setattr(conversions, "takes_buffers", lambda cls: False)
    msg = image_message(Image().header, RGB)
    assert isinstance(msg.data, array_module.array) and bytes(msg.data) == RGB.tobytes()


def test_frame_messages_come_in_publishing_order_navigation_first():
    """A navigation stack's inputs (labels, confidence, the cloud) go out first, then depth
    with its camera_info and the normals, then the colour views; every output has its place
    in that order."""
    assert sorted(PUBLISH_ORDER) == sorted(OUTPUT_BY_NAME)
    h, w = 4, 5
    arrays = {"normals_color": np.zeros((h, w, 3), np.uint8),
              "overlay": np.zeros((h, w, 3), np.uint8),
              "points": np.zeros((h, w), POINT_DTYPE), "normals": np.zeros((h, w, 3), np.float32),
              "depth": np.ones((h, w), np.float32), "labels": np.zeros((h, w), np.uint8),
              "confidence": np.zeros((h, w), np.uint8)}
    info = CameraInfo(width=w, height=h)
    messages = frame_messages(arrays, Image().header, info)
    assert list(messages) == ["segmentation/labels", "segmentation/confidence", "points",
                              "depth/image", "depth/camera_info", "normals/image",
                              "segmentation/overlay", "normals/color"]
    assert list(frame_messages({"depth": arrays["depth"]}, Image().header, None)) == \
        ["depth/image"]


def test_the_node_publishes_navigation_outputs_without_waiting_for_the_views(monkeypatch):
    """frame_message_stream makes each message when it is reached: every navigation message
    (labels, confidence, the cloud) and the depth with its camera_info are out before the
    stream first waits for a view (which the worker threads may still be making)."""
    h, w = 6, 8
    labels = np.zeros((h, w), np.uint8)
    depth = np.linspace(1, 50, h * w, dtype=np.float32).reshape(h, w)
    pred = Prediction(labels, depth, None, np.full((h, w), 200, np.uint8))
    streamed: list[str] = []
    waited_after: list[list[str]] = []
    real_get = FrameOutputs.__getitem__

    def spy(self, name):
        if name in self._pending:
            waited_after.append(list(streamed))
        return real_get(self, name)
    wanted = {"labels", "confidence", "depth", "points", "segmentation_color", "overlay",
              "depth_color"}
    arrays = start_outputs(np.zeros((h, w, 3), np.uint8), pred, get_preset("kitti"),
                           OutputSettings(), wanted, Intrinsics(10, 10, 4, 3, w, h))
    monkeypatch.setattr(FrameOutputs, "__getitem__", spy)
    for topic, _ in frame_message_stream(arrays, Image().header, CameraInfo(width=w, height=h)):
        streamed.append(topic)
    assert waited_after[0] == ["segmentation/labels", "segmentation/confidence", "points",
                               "depth/image", "depth/camera_info"]
    assert len(waited_after) == 3  # each view waited for once
    assert streamed[5:] == ["segmentation/color", "segmentation/overlay", "depth/color"]


def test_camera_info_checks_and_restamping():
    info = CameraInfo(width=9, height=7, k=[50.0, 0, 4.5, 0, 60.0, 3.5, 0, 0, 1], d=[0.1] * 5)
    intr = camera_intrinsics(info, 9, 7)
    assert (intr.fx, intr.fy, intr.cx, intr.cy) == (50.0, 60.0, 4.5, 3.5)
    with pytest.raises(ImageError, match="camera_info: size 9x7 does not match the image's 18x14"):
        camera_intrinsics(info, 18, 14)
    bad = CameraInfo(width=9, height=7, k=[0.0, 0, 4.5, 0, float("nan"), 3.5, 0, 0, 1])
    with pytest.raises(ImageError, match="camera_info: camera matrix K has unusable focal lengths"):
        camera_intrinsics(bad, 9, 7)
    uncalibrated = CameraInfo(width=9, height=7)  # camera_info_manager's: K and P all zeros
    with pytest.raises(ImageError, match="camera_info: camera matrix K has unusable focal "
                                         "lengths fx=0.0 fy=0.0"):
        camera_intrinsics(uncalibrated, 9, 7)
    header = Image().header
    header.frame_id = "cam"
    restamped = camera_info_for(info, header)
    assert restamped.header.frame_id == "cam" and list(restamped.d) == [0.1] * 5


def test_camera_info_is_read_as_image_geometry_reads_it():
    """P (the rectified image's) before K, then the region of interest and the binning,
    which CameraInfo's size, K and P do not include."""
    k = [400.0, 0, 330.0, 0, 410.0, 250.0, 0, 0, 1]
    p = [500.0, 0, 320.0, 0, 0, 520.0, 240.0, 0, 0, 0, 1, 0]
    info = CameraInfo(width=640, height=480, k=k, p=p)
    intr = camera_intrinsics(info, 640, 480)
    assert (intr.fx, intr.fy, intr.cx, intr.cy) == (500.0, 520.0, 320.0, 240.0)
    info.p = [0.0] * 12  # a driver that fills K only
    assert astuple(camera_intrinsics(info, 640, 480))[:4] == (400.0, 410.0, 330.0, 250.0)
    # depth/camera_info then carries the P it was read as ([K | 0]) and R the identity, since
    # depth_image_proc and RViz take the focal lengths from P (zero: a division by zero)
    depth_info = camera_info_for(info, Image().header)
    assert list(depth_info.p) == [400.0, 0, 330.0, 0, 0, 410.0, 250.0, 0, 0, 0, 1, 0]
    assert list(depth_info.r) == [1.0, 0, 0, 0, 1, 0, 0, 0, 1] and list(depth_info.k) == k
    info.p, info.r = p, [0.0, 1, 0, 1, 0, 0, 0, 0, 1]  # a usable P and R go on unchanged
    depth_info = camera_info_for(info, Image().header)
    assert list(depth_info.p) == p and list(depth_info.r) == list(info.r)
    info.p = p
    info.binning_x, info.binning_y = 2, 4
    intr = camera_intrinsics(info, 320, 120)
    assert astuple(intr) == (250.0, 130.0, 160.0, 60.0, 320, 120)
    with pytest.raises(ImageError, match=r"camera_info: size 640x480 \(binning 2x4\) does not "
                                         r"match the image's 640x480"):
        camera_intrinsics(info, 640, 480)
    info.roi.x_offset, info.roi.y_offset, info.roi.width, info.roi.height = 100, 40, 200, 160
    intr = camera_intrinsics(info, 100, 40)
    assert astuple(intr) == (250.0, 130.0, (320.0 - 100) / 2, (240.0 - 40) / 4, 100, 40)
    with pytest.raises(ImageError, match=r"size 640x480 \(binning 2x4, roi 200x160 at 100,40\) "
                                         r"does not match the image's 320x120"):
        camera_intrinsics(info, 320, 120)
    info.binning_x = info.binning_y = 0  # 0 means 1, as in image_geometry
    assert astuple(camera_intrinsics(info, 200, 160)) == (500.0, 520.0, 220.0, 200.0, 200, 160)
    bad_p = CameraInfo(width=9, height=7, k=[5.0, 0, 4.5, 0, 5.0, 3.5, 0, 0, 1],
                       p=[-1.0, 0, 4.5, 0, 0, 5.0, 3.5, 0, 0, 0, 1, 0])
    assert camera_intrinsics(bad_p, 9, 7).fx == 5.0  # P unusable: K


@pytest.mark.parametrize("array", [
    np.arange(20, dtype=np.uint8).reshape(4, 5), np.arange(20, dtype=np.uint16).reshape(4, 5) * 999,
    np.arange(60, dtype=np.uint8).reshape(4, 5, 3), np.linspace(0, 1, 20, dtype=np.float32).reshape(4, 5),
    np.linspace(-1, 1, 60, dtype=np.float32).reshape(4, 5, 3),
])
def test_output_images_round_trip(array):
    from hydranet_ros.ros.conversions import image_to_array
    back = image_to_array(image_message(Image().header, array))
    assert back.dtype == array.dtype and np.array_equal(back, array)
    with pytest.raises(ImageError, match="encoding: 'bgr8' is not one of"):
        image_to_array(image_msg(RGB, "bgr8", stamp()))
