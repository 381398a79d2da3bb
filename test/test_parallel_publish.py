"""Publishing without Python's lock (``ros/parallel_publish.py``): the messages that arrive are
the ones rclpy would have sent, field for field and in order; failures raise naming the topic
and leave the publisher usable; and where rclpy lacks what it needs, the reason is given."""

from __future__ import annotations

import ctypes
import threading

import numpy as np
import pytest

from conftest import import_or_skip

import_or_skip("rclpy", "rclpy is not installed (pip install -e .[ros])")

from rclpy.qos import QoSProfile, ReliabilityPolicy  # noqa: E402
from rclpy.serialization import deserialize_message, serialize_message  # noqa: E402
from sensor_msgs.msg import CameraInfo, Image, PointCloud2  # noqa: E402

from hydranet_ros.geometry import POINT_DTYPE  # noqa: E402
from hydranet_ros.ros import parallel_publish  # noqa: E402
from hydranet_ros.ros.conversions import image_message, pointcloud_message  # noqa: E402
from hydranet_ros.ros.parallel_publish import FramePublisher, gil_free, unavailable  # noqa: E402
from ros_harness import spin_until  # noqa: E402

RELIABLE = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE)


@pytest.fixture
def node(ros):
    node = ros.create_node("parallel_publish_test")
    yield node
    node.destroy_node()


def frame(i: int) -> list[tuple[str, object]]:
    """A frame's worth of messages: a 1.2 MB cloud, an image (from views of arrays, as the
    node makes them) and a camera_info."""
    rng = np.random.default_rng(i)
    header = Image().header
    header.stamp.sec, header.frame_id = i, "camera"
    cloud = np.zeros((240, 320), dtype=POINT_DTYPE)
    cloud["x"] = rng.random((240, 320))
    cloud["label"] = i
    info = CameraInfo(header=header, width=320, height=240)
    return [("points", pointcloud_message(header, cloud)),
            ("image", image_message(header, rng.integers(0, 255, (240, 320, 3), np.uint8))),
            ("info", info)]


def as_sent(cls: type, data: bytes):
    """The message in those bytes (CDR's alignment padding is not part of a message, and
    Fast DDS leaves it as it finds it)."""
    return deserialize_message(data, cls)


def subscribe(node, topics: dict[str, type]) -> dict[str, list[bytes]]:
    got: dict[str, list[bytes]] = {name: [] for name in topics}
    for name, cls in topics.items():
        node.create_subscription(cls, f"/pp_test/{name}",
                                 lambda msg, n=name: got[n].append(serialize_message(msg)),
                                 RELIABLE)
    return got


def test_this_rclpy_allows_it(node):
    publisher = node.create_publisher(PointCloud2, "/pp_test/check", RELIABLE)
    assert unavailable(publisher) is None
    # rcl_publish through ctypes.CDLL: ctypes releases the GIL for the call (a PyDLL would not)
    assert not parallel_publish._rcl().publish._flags_ & ctypes._FUNCFLAG_PYTHONAPI


@pytest.mark.parametrize("threads", [1, 3])
def test_messages_arrive_as_rclpy_sends_them_and_in_order(node, threads):
    types = {"points": PointCloud2, "image": Image, "info": CameraInfo}
    publishers = {name: node.create_publisher(cls, f"/pp_test/{name}", RELIABLE)
                  for name, cls in types.items()}
    got = subscribe(node, types)
    sender = FramePublisher(threads)
    assert all(sender.parallel(p) for p in publishers.values())
    assert spin_until(node, lambda: all(p.get_subscription_count() for p in publishers.values()),
                      10)
    frames = [frame(i) for i in range(6)]
    for messages in frames:
        sender.publish((publishers[name], msg) for name, msg in messages)
    sender.close()
    spin_until(node, lambda: sum(map(len, got.values())) >= 18, 20)
    for name in types:
        expected = [serialize_message(msg) for messages in frames
                    for n, msg in messages if n == name]
        assert [as_sent(types[name], b) for b in got[name]] == \
            [as_sent(types[name], b) for b in expected], \
            f"{name}: {len(got[name])} of {len(expected)} as sent"


def test_a_bad_message_raises_naming_the_topic_and_the_publisher_goes_on(node):
    publisher = node.create_publisher(Image, "/pp_test/image", RELIABLE)
    got = subscribe(node, {"image": Image})
    sender = FramePublisher(2)
    with pytest.raises(TypeError, match="expected Image on '/pp_test/image', got CameraInfo"):
        sender.publish([(publisher, CameraInfo())])
    broken = Image()
    broken._height = "tall"  # past the setter: only the C conversion can refuse it
    with pytest.raises(Exception) as by_rclpy:
        publisher.publish(broken)
    with pytest.raises(type(by_rclpy.value)):  # refused as rclpy refuses it
        sender.publish([(publisher, broken)])
    good = frame(1)[1][1]
    spin_until(node, lambda: publisher.get_subscription_count() > 0, 10)
    sender.publish([(publisher, good)])
    spin_until(node, lambda: bool(got["image"]), 10)
    assert [as_sent(Image, b) for b in got["image"]] == [as_sent(Image, serialize_message(good))]
    sender.close()


def test_a_destroyed_publisher_raises_instead_of_crashing(node):
    publisher = node.create_publisher(Image, "/pp_test/gone", RELIABLE)
    sender = FramePublisher(1)
    message = frame(0)[1][1]
    sender.publish([(publisher, message)])
    node.destroy_publisher(publisher)
    with pytest.raises(Exception, match="destruction was requested"):
        sender.publish([(publisher, message)])
    sender.close()


def test_after_close_messages_are_sent_by_the_caller(node):
    publisher = node.create_publisher(Image, "/pp_test/late", RELIABLE)
    sender = FramePublisher(2)
    sender.close()
    names: list[str] = []
    real_send = parallel_publish.GilFreePublish.send

    def send(self, raw):
        names.append(threading.current_thread().name)
        real_send(self, raw)
    parallel_publish.GilFreePublish.send = send
    try:
        sender.publish([(publisher, frame(0)[1][1])])
    finally:
        parallel_publish.GilFreePublish.send = real_send
    assert names == [threading.current_thread().name]


def test_no_threads_is_rclpys_publish(node):
    publisher = node.create_publisher(Image, "/pp_test/plain", RELIABLE)
    assert not FramePublisher(0).parallel(publisher)
    assert gil_free(publisher) is not None  # available, but not asked for


def test_reasons_where_rclpy_lacks_what_it_needs(node, monkeypatch):
    class Handle:  # an rclpy without 'pointer'
        pass

    class Publisher:
        msg_type = Image
        handle = Handle()
    assert unavailable(Publisher()) == "rclpy's publisher handle has no 'pointer'"
    monkeypatch.setattr(parallel_publish, "_rcl", lambda: None)
    assert "librcl.so" in unavailable(Publisher())
    assert FramePublisher(2).parallel(Publisher()) is False
