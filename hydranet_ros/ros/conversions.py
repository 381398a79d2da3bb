"""sensor_msgs <-> numpy without cv_bridge, with cv_bridge's semantics for what is supported.

Decoding validates every field first and raises ``ImageError`` naming the field, so that a
node can skip a malformed frame with one clear warning. Arrays are views of the message
buffer wherever the layout allows (no copy for rgb8, bgr8 and padded rows).

The same code serves the live node (rclpy's message classes) and the offline bag tool (the
``rosbags`` library's, no ROS needed): decoding only reads fields, and messages are built
from a ``MessageKit`` naming the classes to build them with.
"""

from __future__ import annotations

import array as std_array
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from functools import cache, lru_cache
from typing import Callable, Iterable

import cv2
import numpy as np

from ..errors import HydraNetError
from ..geometry import Intrinsics
from ..outputs import OUTPUT_BY_NAME, OUTPUTS, PUBLISH_ORDER

#: Bayer patterns (the 2x2 tile's colours row by row, as sensor_msgs names them) -> the
#: OpenCV conversion to RGB (OpenCV names a pattern by its second row: cv_bridge's mapping).
BAYER_TO_RGB = {"rggb": cv2.COLOR_BayerBG2RGB, "bggr": cv2.COLOR_BayerRG2RGB,
                "gbrg": cv2.COLOR_BayerGR2RGB, "grbg": cv2.COLOR_BayerGB2RGB}
#: Supported input encodings -> (channels, bytes per channel, OpenCV conversion to RGB or
#: None): what cv_bridge's ``imgmsg_to_cv2(msg, "rgb8")`` converts. 16-bit encodings are
#: converted, then scaled to 8 bits (x 255/65535); yuv422 is UYVY, yuv422_yuy2 YUYV.
ENCODINGS = {
    "rgb8": (3, 1, None), "bgr8": (3, 1, cv2.COLOR_BGR2RGB),
    "rgba8": (4, 1, cv2.COLOR_RGBA2RGB), "bgra8": (4, 1, cv2.COLOR_BGRA2RGB),
    "mono8": (1, 1, cv2.COLOR_GRAY2RGB), "mono16": (1, 2, cv2.COLOR_GRAY2RGB),
    "rgb16": (3, 2, None), "bgr16": (3, 2, cv2.COLOR_BGR2RGB),
    "rgba16": (4, 2, cv2.COLOR_RGBA2RGB), "bgra16": (4, 2, cv2.COLOR_BGRA2RGB),
    "yuv422": (2, 1, cv2.COLOR_YUV2RGB_UYVY), "yuv422_yuy2": (2, 1, cv2.COLOR_YUV2RGB_YUYV),
    **{f"bayer_{pattern}{bits}": (1, bits // 8, code)
       for pattern, code in BAYER_TO_RGB.items() for bits in (8, 16)},
}
#: The largest side accepted, against absurd sizes in corrupted headers.
MAX_SIDE = 1 << 15
HOST_BIG_ENDIAN = sys.byteorder == "big"
#: sensor_msgs/PointField datatypes of the point cloud's fields.
POINT_FIELD_TYPES = {np.dtype("<f4"): 7, np.dtype("<u4"): 6}  # FLOAT32, UINT32
#: Published with depth/image: the camera info that goes with it.
DEPTH_INFO_TOPIC = "depth/camera_info"
#: Output encodings of arrays, by (dtype, channels).
OUTPUT_ENCODINGS = {
    ("uint8", 1): "mono8", ("uint16", 1): "mono16", ("uint8", 3): "rgb8",
    ("float32", 1): "32FC1", ("float32", 3): "32FC3",
}


class ImageError(HydraNetError):
    """A message that cannot be turned into an image; ``field`` names the offending field."""

    def __init__(self, field: str, detail: str) -> None:
        super().__init__(f"{field}: {detail}")
        self.field = field


def _check_layout(msg, channels: int, depth: int) -> None:
    width, height, step, size = msg.width, msg.height, msg.step, len(msg.data)
    if width == 0 or height == 0:
        raise ImageError("width/height", f"image is empty ({width}x{height})")
    if width > MAX_SIDE or height > MAX_SIDE:
        raise ImageError("width/height", f"{width}x{height} exceeds {MAX_SIDE} pixels a side")
    if step < width * channels * depth:
        raise ImageError("step", f"{step} bytes is less than width x bytes per pixel "
                         f"({width} x {channels * depth})")
    if size != step * height:
        raise ImageError("data", f"{size} bytes, expected step x height = {step} x {height} "
                         f"= {step * height}")


def image_to_rgb(msg) -> np.ndarray:
    """(H, W, 3) uint8 RGB of a sensor_msgs/Image: a view of the message for rgb8 (padded
    rows too), one OpenCV conversion otherwise.

    As cv_bridge's ``imgmsg_to_cv2(msg, 'rgb8')``: alpha is dropped, grey is replicated,
    16-bit values are converted, then scaled by 255/65535 and rounded (Bayer demosaiced at
    16 bits, as cv_bridge does), ``is_bigendian`` is honoured.
    """
    encoding = msg.encoding
    if encoding not in ENCODINGS:
        hint = " (use rgb8 or bgr8 for colour)" if encoding.startswith("8UC") else ""
        raise ImageError("encoding", f"{encoding!r} is not supported{hint}; supported: "
                         f"{', '.join(ENCODINGS)}")
    channels, depth, code = ENCODINGS[encoding]
    _check_layout(msg, channels, depth)
    if channels == 2 and msg.width % 2:
        raise ImageError("width/height", f"{encoding} pairs pixels: its width must be even, "
                         f"not {msg.width}")
    rows = np.frombuffer(msg.data, dtype=np.uint8).reshape(msg.height, msg.step)
    pixels = rows[:, :msg.width * channels * depth]
    bayer = encoding.startswith("bayer_")
    if depth == 2:
        order = ">" if msg.is_bigendian else "<"
        pixels = pixels.view(np.dtype(f"{order}u2")).astype(np.uint16)
        if not bayer:  # channels only copied or dropped: scaling first is exact, and cheaper
            pixels = _to_8_bits(pixels)
    image = pixels.reshape(msg.height, msg.width, channels)
    if code is not None:
        image = cv2.cvtColor(image[:, :, 0] if channels == 1 else image, code)
    return _to_8_bits(image) if image.dtype == np.uint16 else image


def _to_8_bits(values: np.ndarray) -> np.ndarray:
    """16-bit values scaled to 8 bits and rounded, as cv_bridge does (x 255/65535)."""
    return cv2.convertScaleAbs(values, alpha=255.0 / 65535.0)


#: dtype and channels of the encodings the node publishes (the inverse of OUTPUT_ENCODINGS).
ARRAY_ENCODINGS = {encoding: (dtype, channels)
                   for (dtype, channels), encoding in OUTPUT_ENCODINGS.items()}


def image_to_array(msg) -> np.ndarray:
    """(H, W) or (H, W, C) array of an Image in one of the node's output encodings
    (mono8, mono16, rgb8, 32FC1, 32FC3), e.g. to evaluate or record what it published."""
    if msg.encoding not in ARRAY_ENCODINGS:
        raise ImageError("encoding", f"{msg.encoding!r} is not one of "
                         f"{', '.join(ARRAY_ENCODINGS)}")
    dtype, channels = ARRAY_ENCODINGS[msg.encoding]
    dtype = np.dtype(dtype).newbyteorder(">" if msg.is_bigendian else "<")
    _check_layout(msg, channels, dtype.itemsize)
    rows = np.frombuffer(msg.data, dtype=np.uint8).reshape(msg.height, msg.step)
    pixels = rows[:, :msg.width * channels * dtype.itemsize].view(dtype)
    shape = (msg.height, msg.width) if channels == 1 else (msg.height, msg.width, channels)
    return pixels.reshape(shape).astype(dtype.newbyteorder("="), copy=False)


def compressed_to_rgb(msg) -> np.ndarray:
    """(H, W, 3) uint8 RGB from a sensor_msgs/CompressedImage (JPEG or PNG); a Bayer
    mosaic, as image_transport names it in the format ("bayer_rggb8; png compressed
    bayer_rggb8"), is demosaiced as the raw one would be, not taken for a grey picture."""
    if "compressedDepth" in msg.format:
        raise ImageError("format", f"{msg.format!r} is a depth transport, not a colour image")
    data = np.frombuffer(msg.data, dtype=np.uint8)
    bayer = _compressed_bayer(msg.format)
    mode = cv2.IMREAD_UNCHANGED if bayer else cv2.IMREAD_COLOR
    image = cv2.imdecode(data, mode) if data.size else None
    if image is None:
        raise ImageError("data", f"{data.size} bytes are not a decodable JPEG/PNG image "
                         f"(format {msg.format!r})")
    if not bayer:
        return image[:, :, ::-1]
    if image.ndim != 2:
        raise ImageError("format", f"{msg.format!r} names a Bayer mosaic, but the image has "
                         f"{image.shape[2]} channels")
    rgb = cv2.cvtColor(image, ENCODINGS[bayer][2])
    return _to_8_bits(rgb) if rgb.dtype == np.uint16 else rgb


def _compressed_bayer(fmt: str) -> str | None:
    """The Bayer encoding a CompressedImage's format says its picture is in, or None."""
    compressed_as = fmt.split("compressed", 1)[1].strip() if "compressed" in fmt else ""
    return compressed_as if compressed_as.startswith("bayer_") and \
        compressed_as in ENCODINGS else None


def camera_intrinsics(info, width: int, height: int) -> Intrinsics:
    """The intrinsics of the ``width`` x ``height`` image a CameraInfo describes, read as
    image_geometry's PinholeCameraModel reads them (so the cloud agrees with depth_image_proc):
    P's focal lengths and centre, those of the rectified image the node should be given (K's
    where P is unset, as some drivers leave it), shifted by the region of interest and divided
    by the binning, since the size, K and P describe the full-resolution sensor."""
    bin_x, bin_y = max(1, info.binning_x), max(1, info.binning_y)
    roi = info.roi
    cropped = roi.width > 0 and roi.height > 0
    full = (roi.width, roi.height) if cropped else (info.width, info.height)
    if (full[0] // bin_x, full[1] // bin_y) != (width, height):
        raise ImageError("camera_info", f"size {info.width}x{info.height}"
                         f"{_reduction(bin_x, bin_y, roi if cropped else None)} "
                         f"does not match the image's {width}x{height}")
    fx, fy, cx, cy, source = _focal_and_centre(info)
    off_x, off_y = (roi.x_offset, roi.y_offset) if cropped else (0, 0)
    try:
        return Intrinsics.checked(fx / bin_x, fy / bin_y, (cx - off_x) / bin_x,
                                  (cy - off_y) / bin_y, width, height, source)
    except HydraNetError as exc:
        raise ImageError("camera_info", f"{exc}") from None


def _focal_and_centre(info) -> tuple[float, float, float, float, str]:
    """fx, fy, cx, cy from P where it has usable focal lengths, else from K (which is then
    checked and named in any error)."""
    if (p := _usable_p(info)) is not None:
        return p[0], p[5], p[2], p[6], "projection matrix P"
    k = np.asarray(info.k, dtype=np.float64).reshape(-1)
    if k.size != 9:
        raise ImageError("camera_info", f"camera matrix K has {k.size} entries, expected 9, "
                         f"and P has no usable focal lengths")
    return k[0], k[4], k[2], k[5], "camera matrix K"


def _usable_p(info) -> np.ndarray | None:
    """P as 12 floats where its focal lengths and centre are usable, else None."""
    p = np.asarray(info.p, dtype=np.float64).reshape(-1)
    if p.size == 12 and np.all(np.isfinite(p[[0, 2, 5, 6]])) and p[0] > 0 and p[5] > 0:
        return p
    return None


def _reduction(bin_x: int, bin_y: int, roi) -> str:
    """' (binning 2x2, roi 640x480 at 0,0)' where the CameraInfo bins or crops (``roi`` not
    None), else ''."""
    parts = [f"binning {bin_x}x{bin_y}"] if bin_x > 1 or bin_y > 1 else []
    if roi is not None:
        parts.append(f"roi {roi.width}x{roi.height} at {roi.x_offset},{roi.y_offset}")
    return f" ({', '.join(parts)})" if parts else ""


@dataclass(frozen=True)
class MessageKit:
    """The message classes to build with, and how a message gets its uint8[] ``data``."""
    Image: type
    PointCloud2: type
    PointField: type
    CameraInfo: type
    #: (class, other fields, the bytes as a contiguous array) -> message
    with_data: Callable[[type, dict, np.ndarray], object]


def _rclpy_with_data(cls: type, fields: dict, data: np.ndarray):
    """rclpy's message, its uint8[] ``data`` the array's own bytes where ``takes_buffers``
    says the class allows it (no copy: publishing reads them), else an array.array filled
    straight from the array's memory (one copy; bytes would be copied twice, a numpy array
    element by element), assigned after construction (the constructor would copy again)."""
    msg = cls(**fields)
    flat = data.reshape(-1).view(np.uint8)
    if takes_buffers(cls):
        msg._data = flat
        return msg
    buffer = std_array.array("B")
    buffer.frombytes(flat)
    msg.data = buffer
    return msg


#: A few bytes that make a wrong offset or length visible in the probe.
_PROBE_BYTES = np.arange(1, 8, dtype=np.uint8)


@cache
def takes_buffers(cls: type) -> bool:
    """Whether rclpy's generated class publishes a numpy array kept in its ``_data`` slot
    (bypassing the setter, which only takes array.array or copies element by element) as
    the same bytes as the array.array it expects: its C converter reads uint8[] through the
    buffer protocol. Checked once per class against rclpy's own serialisation, so a rosidl
    that stops doing so costs a copy per message, never a wrong one."""
    if "_data" not in getattr(cls, "__slots__", ()):
        return False
    try:
        from rclpy.serialization import deserialize_message, serialize_message
        expected, probe = cls(), cls()
        expected.data = std_array.array("B", _PROBE_BYTES.tobytes())
        probe._data = _PROBE_BYTES.copy()
        # read back, not compared as bytes: CDR's padding bytes are not written, so they
        # hold whatever the buffer held (a byte comparison failed now and then)
        return deserialize_message(serialize_message(probe), cls) == expected
    except Exception:  # noqa: BLE001  any refusal means: copy as rclpy expects
        return False


@lru_cache(maxsize=1)
def rclpy_kit() -> MessageKit:
    from sensor_msgs.msg import CameraInfo, Image, PointCloud2, PointField
    return MessageKit(Image, PointCloud2, PointField, CameraInfo, _rclpy_with_data)


def output_topic_types(names: Iterable[str], kit: MessageKit | None = None) -> dict[str, type]:
    """Relative topic -> message class of the named outputs (see ``outputs.OUTPUTS``), with
    depth/camera_info beside depth/image."""
    kit = kit or rclpy_kit()
    names = set(names)
    unknown = names - set(OUTPUT_BY_NAME)
    if unknown:
        raise KeyError(f"unknown output(s): {', '.join(sorted(unknown))}")
    types = {spec.topic: kit.PointCloud2 if spec.name == "points" else kit.Image
             for spec in OUTPUTS if spec.name in names}  # in the order of OUTPUTS
    if "depth" in names:
        types[DEPTH_INFO_TOPIC] = kit.CameraInfo
    return types


def image_fields(array: np.ndarray) -> dict:
    """The fields of the sensor_msgs/Image holding a C-contiguous ``array`` (header and data
    aside); the encoding follows from its dtype and shape."""
    channels = 1 if array.ndim == 2 else array.shape[2]
    return dict(height=array.shape[0], width=array.shape[1],
                encoding=OUTPUT_ENCODINGS[(array.dtype.name, channels)],
                is_bigendian=HOST_BIG_ENDIAN, step=array.strides[0])


def point_fields(cloud: np.ndarray) -> list[tuple[str, int, int, int]]:
    """(name, offset, datatype, count) of each sensor_msgs/PointField of a POINT_DTYPE cloud."""
    return [(name, offset, POINT_FIELD_TYPES[dtype], 1)
            for name, (dtype, offset) in cloud.dtype.fields.items()]


def cloud_is_dense(cloud: np.ndarray) -> bool:
    """PointCloud2's ``is_dense``: no point is invalid (a NaN z)."""
    return not bool(np.isnan(cloud["z"]).any())


def pointcloud_fields(cloud: np.ndarray, is_dense: bool | None = None) -> dict:
    """The fields of the PointCloud2 of a C-contiguous POINT_DTYPE cloud besides header,
    ``fields`` (``point_fields``) and data: organized when it has several rows. ``is_dense``
    where already known (made on the GPU), else read from the cloud."""
    return dict(height=cloud.shape[0], width=cloud.shape[1], is_bigendian=False,
                point_step=cloud.dtype.itemsize, row_step=cloud.dtype.itemsize * cloud.shape[1],
                is_dense=cloud_is_dense(cloud) if is_dense is None else is_dense)


def image_message(header, array: np.ndarray, kit: MessageKit | None = None):
    """A sensor_msgs/Image holding ``array``; the encoding follows from its dtype and shape."""
    kit = kit or rclpy_kit()
    array = np.ascontiguousarray(array)
    return kit.with_data(kit.Image, dict(header=header, **image_fields(array)), array)


def pointcloud_message(header, cloud: np.ndarray, kit: MessageKit | None = None):
    """A PointCloud2 of a POINT_DTYPE array: organized when it has several rows."""
    kit = kit or rclpy_kit()
    cloud = np.ascontiguousarray(cloud)
    fields = [kit.PointField(name=name, offset=offset, datatype=datatype, count=count)
              for name, offset, datatype, count in point_fields(cloud)]
    return kit.with_data(kit.PointCloud2, dict(header=header, fields=fields,
                                               **pointcloud_fields(cloud)), cloud)


def output_message(name: str, header, array: np.ndarray, kit: MessageKit | None = None):
    """The message of one of the node's outputs (see ``outputs.OUTPUTS``)."""
    if name == "points":
        return pointcloud_message(header, array, kit)
    return image_message(header, array, kit)


def camera_info_for(info, header, kit: MessageKit | None = None):
    """``info`` restamped with the image's header, for consumers pairing it with depth.

    Where a driver filled K alone (P, and often R, zero), P becomes [K | 0] and R the
    identity, the rectified camera the node's own cloud assumed (``camera_intrinsics``):
    depth_image_proc and RViz read the focal lengths from P, and would divide by zero."""
    kit = kit or rclpy_kit()
    p, r = info.p, info.r
    if _usable_p(info) is None:
        k = np.asarray(info.k, dtype=np.float64).reshape(3, 3)
        p = np.hstack([k, np.zeros((3, 1))]).reshape(-1)
        if not np.any(np.asarray(r, dtype=np.float64)):
            r = np.eye(3).reshape(-1)
    return kit.CameraInfo(header=header, height=info.height, width=info.width,
                          distortion_model=info.distortion_model, d=info.d, k=info.k, r=r,
                          p=p, binning_x=info.binning_x, binning_y=info.binning_y,
                          roi=info.roi)


def label_info_message(label_info_cls: type, vision_class_cls: type, class_names, header,
                       threshold: float):
    """A vision_msgs/LabelInfo: class id -> name for every class of the preset (the classes
    are given, as vision_msgs is optional and not on PyPI)."""
    return label_info_cls(header=header, threshold=float(threshold), class_map=[
        vision_class_cls(class_id=i, class_name=name) for i, name in enumerate(class_names)])


def frame_messages(arrays: Mapping[str, np.ndarray], header, info,
                   kit: MessageKit | None = None) -> dict:
    """The messages of one frame by relative topic, in the order to publish them (the bag
    tool's form of ``frame_message_stream``)."""
    return dict(frame_message_stream(arrays, header, info, kit))


#: How the node makes an output's message: (name, header, the frame's arrays) -> message.
MessageMaker = Callable[[str, object, Mapping[str, np.ndarray]], object]


def frame_message_stream(arrays: Mapping[str, np.ndarray], header, info,
                         kit: MessageKit | None = None,
                         make: MessageMaker | None = None) -> Iterator[tuple[str, object]]:
    """(relative topic, message) of one frame in the order to publish them
    (``outputs.PUBLISH_ORDER``): every output array stamped with the input's header, and
    depth/camera_info right after a depth image. Each message is made when it is reached, so
    the node publishes the navigation outputs while the views of ``outputs.start_outputs``
    are still being made. Shared by the live node and the bag tool, so both produce the same
    messages; ``make`` replaces ``output_message`` (the node's messages serialized in place,
    ``serialized.py``)."""
    for name in PUBLISH_ORDER:
        if name in arrays:
            msg = make(name, header, arrays) if make is not None \
                else output_message(name, header, arrays[name], kit)
            yield OUTPUT_BY_NAME[name].topic, msg
            if name == "depth" and info is not None:
                yield DEPTH_INFO_TOPIC, camera_info_for(info, header, kit)
