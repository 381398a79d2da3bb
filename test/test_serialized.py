"""Outputs published serialized in place (``ros/serialized.py``): the bytes written around an
output in its packed buffer, or around an array the host path made with room
(``message_room.py``), are the message rclpy would have sent, field for field, for every
output kind, frame_id length and cloud layout; what arrives through rcl is that message, in
order; the neighbouring outputs are untouched; and where there is no room (replaced arrays,
a long frame_id, arrays made otherwise) or rclpy lacks what it needs, the message is
rclpy's."""

from __future__ import annotations

import ctypes
import threading

import numpy as np
import pytest
import torch

from conftest import import_or_skip

import_or_skip("rclpy", "rclpy is not installed (pip install -e .[ros])")

from rclpy.qos import QoSProfile, ReliabilityPolicy  # noqa: E402
from rclpy.serialization import deserialize_message, serialize_message  # noqa: E402
from sensor_msgs.msg import CameraInfo, Image, PointCloud2  # noqa: E402
from std_msgs.msg import Header  # noqa: E402

from hydranet_ros.device_outputs import (CLOUD_DENSE, FrameArrays, dense_flag, pack,  # noqa: E402
                                         unpack)
from hydranet_ros import message_room  # noqa: E402
from hydranet_ros.message_room import ALIGNMENT, ROOM_AFTER, ROOM_BEFORE  # noqa: E402
from hydranet_ros.geometry import POINT_DTYPE, Intrinsics  # noqa: E402
from hydranet_ros.outputs import OUTPUTS, OutputSettings, parts_needed, start_outputs  # noqa: E402
from hydranet_ros.postprocess import postprocess  # noqa: E402
from hydranet_ros.presets import get_preset  # noqa: E402
from hydranet_ros.ros import conversions, serialized  # noqa: E402
from hydranet_ros.ros.conversions import frame_message_stream, output_message  # noqa: E402
from hydranet_ros.ros.serialized import (SerializedMessage, SideBySide, in_place,  # noqa: E402
                                         message_in_place, publish, shares, unavailable)
from ros_harness import spin_until  # noqa: E402

RELIABLE = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE)
TYPES = {"points": PointCloud2}


def cloud_tensor(rng, rows: int, cols: int, nan: bool) -> torch.Tensor:
    cloud = np.zeros((rows, cols), POINT_DTYPE)
    for name in ("x", "y", "z", "rgb"):
        cloud[name] = rng.random((rows, cols), np.float32)
    cloud["label"] = rng.integers(0, 40, (rows, cols))
    if nan:
        cloud["z"][0, 0] = np.nan
    return torch.from_numpy(cloud.view(np.float32).reshape(rows, cols, 5).copy())


def frame_tensors(seed: int, rows: int = 5, cols: int = 7, nan: bool = False) -> dict:
    """One frame's outputs as the device-output code makes them, every kind of encoding."""
    rng = np.random.default_rng(seed)
    return {"labels": torch.from_numpy(rng.integers(0, 40, (rows, cols), np.uint8)),
            "confidence": torch.from_numpy(rng.random((rows, cols), np.float32)),
            "overlay": torch.from_numpy(rng.integers(0, 255, (rows, cols, 3), np.uint8)),
            "depth": torch.from_numpy(rng.random((rows, cols), np.float32)),
            "normals": torch.from_numpy(rng.random((rows, cols, 3), np.float32)),
            "points": cloud_tensor(rng, rows, cols, nan)}


def header(frame_id: str, sec: int = 12, nanosec: int = 345) -> Header:
    h = Header(frame_id=frame_id)
    h.stamp.sec, h.stamp.nanosec = sec, nanosec
    return h


def fields_of(msg, cls: type):
    """A message as it goes on the wire, read back (CDR's padding bytes are no field)."""
    data = msg.data.tobytes() if isinstance(msg, SerializedMessage) else serialize_message(msg)
    return deserialize_message(data, cls)


def test_the_packed_buffer_leaves_room_around_each_output():
    frames = [frame_tensors(0), frame_tensors(1, rows=3)]
    packed, layouts = pack(frames)
    ends = []
    for layout in layouts:
        for _, _, _, size, offset in layout:
            assert offset % ALIGNMENT == 0
            ends.append((offset, offset + size))
    starts = [0] + [end + ROOM_AFTER for _, end in ends[:-1]]
    assert all(offset - start >= ROOM_BEFORE for start, (offset, _) in zip(starts, ends))
    assert packed.numel() == ends[-1][1] + ROOM_AFTER
    back = unpack(packed.numpy(), layouts)
    assert all(isinstance(arrays, FrameArrays) for arrays in back)
    assert np.array_equal(back[1]["depth"], frames[1]["depth"].numpy())


@pytest.mark.parametrize("frame_id", ["", "a", "cam", "camera", "camera_optical_frame"])
@pytest.mark.parametrize("nan", [False, True])
def test_in_place_bytes_are_rclpys_message(frame_id, nan):
    packed, layouts = pack([frame_tensors(3, nan=nan)])
    arrays = unpack(packed.numpy(), layouts)[0]
    before = {name: array.tobytes() for name, array in arrays.items()}
    h = header(frame_id)
    for name, array in arrays.items():
        cls = TYPES.get(name, Image)
        msg = in_place(name, h, arrays)
        assert isinstance(msg, SerializedMessage), name
        expected = output_message(name, h, array)
        assert fields_of(msg, cls) == fields_of(expected, cls), name
        assert msg.data.nbytes == len(serialize_message(expected)), name
    # the fields written around each output overwrote no other output
    assert all(before[name] == arrays[name].tobytes() for name in arrays)
    assert fields_of(in_place("points", h, arrays), PointCloud2).is_dense is not nan


def test_organized_and_unorganized_clouds_and_wide_labels():
    for rows, cols in [(1, 9), (4, 1), (6, 6)]:
        packed, layouts = pack([{"points": cloud_tensor(np.random.default_rng(rows), rows, cols,
                                                        False)}])
        arrays = unpack(packed.numpy(), layouts)[0]
        msg = in_place("points", header("c"), arrays)
        expected = output_message("points", header("c"), arrays["points"])
        assert fields_of(msg, PointCloud2) == fields_of(expected, PointCloud2)
    # more than 256 classes: labels come back int32 and are converted to uint16 (a new
    # array, not in the buffer), so they go as rclpy's message
    packed, layouts = pack([{"labels": torch.arange(12, dtype=torch.int32).view(3, 4)}])
    arrays = unpack(packed.numpy(), layouts)[0]
    assert arrays["labels"].dtype == np.uint16 and in_place("labels", header("c"), arrays) is None
    assert isinstance(message_in_place("labels", header("c"), arrays), Image)


def test_no_room_means_rclpys_message():
    packed, layouts = pack([frame_tensors(4)])
    arrays = unpack(packed.numpy(), layouts)[0]
    plain = dict(arrays)  # views of the buffer, but not known to be laid out
    assert in_place("depth", header("c"), plain) is None
    assert isinstance(message_in_place("depth", header("c"), plain), Image)
    long_id = "f" * ROOM_BEFORE
    assert in_place("depth", header(long_id), arrays) is None
    assert message_in_place("depth", header(long_id), arrays).header.frame_id == long_id
    replaced = arrays.copy()
    replaced["depth"] = arrays["depth"].copy()
    assert in_place("depth", header("c"), replaced) is None
    assert in_place("normals", header("c"), replaced) is not None  # the others still are


def host_outputs(organized: bool = True, classes: int = 40, size=(24, 32)):
    """Every output of a frame made by the host path (as a CPU engine's node makes them)."""
    rng = np.random.default_rng(classes)
    preset = get_preset("nyud_three" if classes == 40 else "kitti")
    wanted = {spec.name for spec in OUTPUTS}
    raw = (rng.normal(size=(classes, size[0] // 4, size[1] // 4)).astype(np.float32),
           rng.uniform(0.5, 5.0, (1, size[0] // 4, size[1] // 4)).astype(np.float32),
           rng.normal(size=(3, size[0] // 4, size[1] // 4)).astype(np.float32))
    pred = postprocess(raw, size, parts_needed(wanted))
    rgb = rng.integers(0, 255, (*size, 3), np.uint8)
    intr = Intrinsics(20.0, 20.0, size[1] / 2, size[0] / 2, size[1], size[0])
    return start_outputs(rgb, pred, preset, OutputSettings(pointcloud_organized=organized),
                         wanted, intr).wait()


@pytest.mark.parametrize("frame_id", ["", "camera_optical_frame"])
def test_host_outputs_made_with_room_go_in_place_as_rclpys_messages(frame_id):
    arrays = host_outputs()
    assert sorted(arrays) == sorted(spec.name for spec in OUTPUTS)
    before = {name: array.tobytes() for name, array in arrays.items()}
    h = header(frame_id)
    for name, array in arrays.items():
        cls = TYPES.get(name, Image)
        msg = in_place(name, h, arrays)
        assert isinstance(msg, SerializedMessage), name  # every one was made with room
        expected = output_message(name, h, array)
        assert fields_of(msg, cls) == fields_of(expected, cls), name
    assert all(before[name] == arrays[name].tobytes() for name in arrays)
    # a cloud of the valid points only is selected into a new array: rclpy's message
    unorganized = host_outputs(organized=False)
    assert in_place("points", h, unorganized) is None
    assert isinstance(message_in_place("points", h, unorganized), PointCloud2)


def test_room_is_known_only_around_whole_arrays_made_with_it():
    made = message_room.empty((4, 6), np.float32)
    buffer, offset = message_room.room(made)
    assert offset == message_room.START and offset >= message_room.ROOM_BEFORE
    assert buffer.nbytes - offset - made.nbytes >= message_room.ROOM_AFTER
    assert made.__array_interface__["data"][0] == buffer.__array_interface__["data"][0] + offset
    assert message_room.room(made.view(np.uint8).reshape(-1)) is not None  # all of it
    assert message_room.room(made[1:]) is None  # its room would be the first row's bytes
    assert message_room.room(made[:, :3]) is None  # not contiguous
    assert message_room.room(np.empty((4, 6), np.float32)) is None
    assert message_room.room(made.copy()) is None


@pytest.mark.parametrize("nan", [False, True])
def test_the_clouds_is_dense_made_on_the_device_is_used_without_reading_the_cloud(
        nan, monkeypatch):
    """A CUDA engine's frame carries the cloud's is_dense (``device_outputs.dense_flag``), so
    the in-place message takes it instead of scanning the cloud on the host; the flag is no
    output of its own, and is dropped where the cloud was replaced."""
    frame = frame_tensors(8, nan=nan)
    frame[CLOUD_DENSE] = dense_flag(frame["points"])
    packed, layouts = pack([frame])
    arrays = unpack(packed.numpy(), layouts)[0]
    assert CLOUD_DENSE not in arrays and arrays.cloud_is_dense is (not nan)
    expected = output_message("points", header("c"), arrays["points"])  # scans the cloud

    def no_scan(cloud):
        raise AssertionError("the cloud was scanned on the host")
    monkeypatch.setattr(conversions, "cloud_is_dense", no_scan)
    msg = in_place("points", header("c"), arrays)
    assert fields_of(msg, PointCloud2) == fields_of(expected, PointCloud2)
    assert fields_of(msg, PointCloud2).is_dense is (not nan)
    assert arrays.copy().cloud_is_dense is (not nan)
    replaced = arrays.copy()
    replaced["points"] = arrays["points"].copy()
    assert replaced.cloud_is_dense is None
    with pytest.raises(AssertionError, match="scanned on the host"):
        output_message("points", header("c"), replaced["points"])


@pytest.fixture
def node(ros):
    node = ros.create_node("serialized_test")
    yield node
    node.destroy_node()


def subscribe(node, topics: dict[str, type], prefix: str) -> dict[str, list[bytes]]:
    got: dict[str, list[bytes]] = {name: [] for name in topics}
    for name, cls in topics.items():
        node.create_subscription(cls, f"{prefix}/{name}",
                                 lambda msg, n=name: got[n].append(serialize_message(msg)),
                                 RELIABLE)
    return got


@pytest.mark.parametrize("threads", [1, 3])
def test_published_in_place_arrives_as_rclpy_sends_it_and_in_order(node, threads):
    """Frames published in place, one message after another or from 3 threads at once
    (``SideBySide``, the node's ``publish_threads``): every message arrives as rclpy sends it,
    each topic's in order."""
    outputs = ("labels", "depth", "points", "normals")
    topics = {"segmentation/labels": Image, "depth/image": Image,
              "depth/camera_info": CameraInfo, "points": PointCloud2, "normals/image": Image}
    prefix = f"/ser_test_{threads}"
    publishers = {name: node.create_publisher(cls, f"{prefix}/{name}", RELIABLE)
                  for name, cls in topics.items()}
    assert all(unavailable(p) is None for p in publishers.values())
    # through ctypes.CDLL: ctypes releases the GIL for the call (a PyDLL would not)
    assert not serialized._rcl().publish_serialized._flags_ & ctypes._FUNCFLAG_PYTHONAPI
    got = subscribe(node, topics, prefix)
    assert spin_until(node, lambda: all(p.get_subscription_count() for p in publishers.values()),
                      10)
    info = CameraInfo(width=7, height=5)
    sent: dict[str, list[bytes]] = {name: [] for name in topics}
    sender = SideBySide(threads)
    for i in range(4):
        frame = {name: t for name, t in frame_tensors(10 + i).items() if name in outputs}
        packed, layouts = pack([frame])
        arrays = unpack(packed.numpy(), layouts)[0]
        h = header("camera", sec=i)
        items = list(frame_message_stream(arrays, h, info, make=message_in_place))
        assert all(isinstance(msg, SerializedMessage) or topic == "depth/camera_info"
                   for topic, msg in items)
        sender.publish([(publishers[topic], msg) for topic, msg in items])
        for topic, msg in frame_message_stream(arrays, h, info):
            sent[topic].append(serialize_message(msg))
    sender.close()
    spin_until(node, lambda: sum(map(len, got.values())) >= 4 * len(topics), 20)
    for name, cls in topics.items():
        assert [deserialize_message(b, cls) for b in got[name]] == \
            [deserialize_message(b, cls) for b in sent[name]], \
            f"{name}: {len(got[name])} of {len(sent[name])} as sent"


def test_a_wrong_type_raises_naming_the_topic_and_the_publisher_goes_on(node):
    publisher = node.create_publisher(Image, "/ser_test/image", RELIABLE)
    packed, layouts = pack([frame_tensors(5)])
    arrays = unpack(packed.numpy(), layouts)[0]
    with pytest.raises(TypeError, match="expected sensor_msgs/msg/Image on '/ser_test/image', "
                                        "got sensor_msgs/msg/PointCloud2"):
        publish(publisher, in_place("points", header("c"), arrays))
    got = subscribe(node, {"image": Image}, "/ser_test")
    spin_until(node, lambda: publisher.get_subscription_count() > 0, 10)
    publish(publisher, in_place("depth", header("c"), arrays))
    spin_until(node, lambda: bool(got["image"]), 10)
    assert deserialize_message(got["image"][0], Image) == \
        fields_of(output_message("depth", header("c"), arrays["depth"]), Image)


def test_a_destroyed_publisher_raises_instead_of_crashing(node):
    publisher = node.create_publisher(Image, "/ser_test/gone", RELIABLE)
    packed, layouts = pack([frame_tensors(6)])
    msg = in_place("depth", header("c"), unpack(packed.numpy(), layouts)[0])
    publish(publisher, msg)
    node.destroy_publisher(publisher)
    with pytest.raises(Exception, match="destruction was requested"):
        publish(publisher, msg)


def test_without_rcl_the_bytes_go_through_rclpy(node, monkeypatch):
    publisher = node.create_publisher(Image, "/ser_test/plain", RELIABLE)
    got = subscribe(node, {"plain": Image}, "/ser_test")
    monkeypatch.setattr(serialized, "_rcl", lambda: None)
    assert "librcl.so" in unavailable(publisher) and "librcl.so" in unavailable()
    packed, layouts = pack([frame_tensors(7)])
    arrays = unpack(packed.numpy(), layouts)[0]
    spin_until(node, lambda: publisher.get_subscription_count() > 0, 10)
    publish(publisher, in_place("overlay", header("c"), arrays))
    spin_until(node, lambda: bool(got["plain"]), 10)
    assert deserialize_message(got["plain"][0], Image) == \
        fields_of(output_message("overlay", header("c"), arrays["overlay"]), Image)


def test_reason_where_rclpys_handle_has_no_pointer():
    class Handle:  # an rclpy without 'pointer'
        pass

    class Publisher:
        msg_type = Image
        handle = Handle()
    assert unavailable(Publisher()) == "rclpy's publisher handle has no 'pointer'"


def test_shares_cut_a_frame_into_runs_of_about_equal_bytes_in_order():
    # a 640x480 frame's outputs in the node's order (MB): labels, depth, points, normals,
    # confidence, then the four colour views
    frame = [0.31, 1.23, 6.14, 3.69, 0.31, 0.92, 0.92, 0.92, 0.92]
    assert shares(frame, 1) == [list(range(9))]
    assert shares(frame, 2) == [[0, 1, 2], [3, 4, 5, 6, 7, 8]]  # navigation's first, at once
    assert shares(frame, 3) == [[0, 1, 2], [3], [4, 5, 6, 7, 8]]
    for count in range(1, 12):
        runs = shares(frame, count)
        assert [i for run in runs for i in run] == list(range(9)) and all(runs)
        assert len(runs) <= count
    assert shares([], 2) == [] and shares([5], 4) == [[0]] and shares([1, 1, 1, 1], 2) == \
        [[0, 1], [2, 3]]


class Recorder:
    """A publisher that notes which thread sent each message, or fails."""

    def __init__(self, log: list, fail: bool = False) -> None:
        self.log, self.fail = log, fail

    def publish(self, msg) -> None:
        if self.fail:
            raise RuntimeError(f"cannot send {msg.name}")
        self.log.append((msg.name, threading.current_thread().name))


class Sized:
    def __init__(self, name: str, size: int) -> None:
        self.name, self.data = name, bytes(size)


def test_side_by_side_sends_each_run_from_its_own_thread_and_raises_after_the_others():
    log: list = []
    sender = SideBySide(2)
    items = [(Recorder(log), Sized(name, size))
             for name, size in (("labels", 3), ("depth", 12), ("points", 61), ("normals", 37),
                                ("overlay", 9), ("depth_color", 9))]
    sender.publish(items)
    threads = dict(log)
    assert sorted(threads) == sorted(msg.name for _, msg in items)
    assert {threads[n] for n in ("labels", "depth", "points")} == \
        {threading.current_thread().name}  # the caller sends the first run
    assert {threads[n] for n in ("normals", "overlay", "depth_color")} != \
        {threading.current_thread().name}
    assert [n for n, _ in log if n in ("labels", "depth", "points")] == \
        ["labels", "depth", "points"]  # in order within a run
    log.clear()
    items[3] = (Recorder(log, fail=True), items[3][1])  # normals, first of the second run
    with pytest.raises(RuntimeError, match="cannot send normals"):
        sender.publish(items)
    assert {n for n, _ in log} == {"labels", "depth", "points"}  # the first run went out whole
    sender.close()
