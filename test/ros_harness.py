"""Helpers for tests that talk to a real hydranet_node process over ROS 2 topics."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import rclpy
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, CompressedImage, Image

from hydranet_ros.outputs import OUTPUTS
from hydranet_ros.ros.node import STOP_TIMEOUT_S
from hydranet_ros.ros.conversions import output_topic_types

REPO = Path(__file__).resolve().parents[1]
NODE_EXE = str(Path(sys.executable).with_name("hydranet_node"))
#: How long a node may take to exit after SIGINT/SIGTERM: its own wait for a frame in flight,
#: plus tearing down DDS, the engine and the interpreter on a busy machine.
STOP_BOUND_S = STOP_TIMEOUT_S + 3.0
OUTPUT_TYPES = output_topic_types(spec.name for spec in OUTPUTS)


def spin_until(node: Node, condition, timeout: float = 20.0) -> bool:
    """Spin ``node`` until ``condition()`` holds (True) or ``timeout`` seconds pass (False)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        rclpy.spin_once(node, timeout_sec=0.02)
    return condition()


class NodeProcess:
    """hydranet_node as a child process, its output collected in a log file."""

    def __init__(self, log_path: Path, params: dict, namespace: str = "",
                 env: dict | None = None, command: list[str] | None = None,
                 remaps: dict[str, str] | None = None) -> None:
        """``command`` runs instead of hydranet_node (e.g. ``gpu_like_node.py``)."""
        args = (command or [NODE_EXE]) + ["--ros-args", "--params-file",
                                          str(REPO / "config" / "hydranet.yaml")]
        for name, value in params.items():
            args += ["-p", f"{name}:={_param_text(value)}"]
        for name, target in (remaps or {}).items():
            args += ["-r", f"{name}:={target}"]
        if namespace:
            args += ["-r", f"__ns:={namespace}"]
        self.log_path = log_path
        self._log = open(log_path, "w")
        self.proc = subprocess.Popen(args, stdout=self._log, stderr=subprocess.STDOUT,
                                     env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})})

    def log(self) -> str:
        return self.log_path.read_text()

    def wait_for_log(self, text: str, timeout: float = 30.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in self.log():
                return True
            if self.proc.poll() is not None:
                return text in self.log()
            time.sleep(0.05)
        return False

    def stop(self, sig: int = signal.SIGINT, timeout: float = 10.0) -> tuple[int, float]:
        """Send ``sig``; (exit code, seconds it took to exit)."""
        started = time.monotonic()
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait()
        self._log.close()
        return code, time.monotonic() - started


def _param_text(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(f'"{v}"' for v in value) + "]"
    return str(value)


class Probe:
    """The test's side of the graph: publishes camera data, records every output."""

    def __init__(self, name: str = "probe", namespace: str = "", image_topic: str = "image",
                 info_topic: str = "camera_info") -> None:
        self.node = Node(name, namespace=namespace)
        self.received: dict[str, list] = {topic: [] for topic in OUTPUT_TYPES}
        self.diagnostics: list = []
        reliable = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        for topic, msg_type in OUTPUT_TYPES.items():
            self.node.create_subscription(msg_type, topic,
                                          lambda m, t=topic: self.received[t].append(m), reliable)
        from diagnostic_msgs.msg import DiagnosticArray
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self.diagnostics.append, 10)
        self.image_pub = self.node.create_publisher(Image, image_topic, reliable)
        self.compressed_pub = self.node.create_publisher(CompressedImage,
                                                         f"{image_topic}/compressed", reliable)
        self.info_pub = self.node.create_publisher(CameraInfo, info_topic, reliable)
        self._next_stamp = 1
        #: Published before every image that exchange() sends, as a camera driver does.
        self.info: CameraInfo | None = None

    def spin_until(self, condition, timeout: float = 20.0) -> bool:
        return spin_until(self.node, condition, timeout)

    def wait_connected(self, publisher, timeout: float = 30.0) -> bool:
        return self.spin_until(lambda: publisher.get_subscription_count() > 0, timeout)

    def stamp(self):
        """A unique header stamp per frame, to match outputs to inputs."""
        from builtin_interfaces.msg import Time
        self._next_stamp += 1
        return Time(sec=1000 + self._next_stamp, nanosec=123)

    def outputs_for(self, stamp, topics) -> dict:
        found = {}
        for topic in topics:
            for msg in self.received[topic]:
                if msg.header.stamp == stamp:
                    found[topic] = msg
        return found

    def wait_outputs(self, stamp, topics, timeout: float = 30.0) -> dict:
        self.spin_until(lambda: len(self.outputs_for(stamp, topics)) == len(topics), timeout)
        return self.outputs_for(stamp, topics)

    def exchange(self, publisher, make_msg, topics, timeout: float = 60.0,
                 resend_s: float = 2.0) -> dict:
        """Publish ``make_msg(stamp)`` (again, with a new stamp, every ``resend_s`` while
        discovery settles) until the outputs on ``topics`` for one stamp have all arrived."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            stamp = self.stamp()
            if self.info is not None:
                self.info.header.stamp = stamp
                self.info_pub.publish(self.info)
            publisher.publish(make_msg(stamp))
            found = self.wait_outputs(stamp, topics, timeout=min(resend_s, deadline - time.monotonic()))
            if len(found) == len(topics):
                return found
        return {}

    def report(self) -> str:
        """What arrived and what is matched, for assertion messages."""
        counts = {t: len(m) for t, m in self.received.items()}
        matched = {t: self.node.count_publishers(self.node.resolve_topic_name(t))
                   for t in self.received}
        return f"received per topic: {counts}; publishers per topic: {matched}"

    def destroy(self) -> None:
        self.node.destroy_node()


def camera_info(width: int, height: int, frame_id: str = "camera_optical_frame",
                fx: float = 100.0, fy: float = 100.0) -> CameraInfo:
    info = CameraInfo(width=width, height=height, distortion_model="plumb_bob")
    info.header.frame_id = frame_id
    info.k = [fx, 0.0, width / 2.0, 0.0, fy, height / 2.0, 0.0, 0.0, 1.0]
    info.p = [fx, 0.0, width / 2.0, 0.0, 0.0, fy, height / 2.0, 0.0, 0.0, 0.0, 1.0, 0.0]
    info.d = [0.0] * 5
    return info


def image_msg(array: np.ndarray, encoding: str, stamp, frame_id: str = "camera_optical_frame",
              pad: int = 0, big_endian: bool = False) -> Image:
    """An Image of ``array`` (already in ``encoding``'s channel order), rows padded by ``pad``."""
    height, width = array.shape[:2]
    if array.dtype == np.uint16:
        array = array.astype(">u2" if big_endian else "<u2")
    row = array.reshape(height, -1).view(np.uint8)
    padded = np.zeros((height, row.shape[1] + pad), dtype=np.uint8)
    padded[:, :row.shape[1]] = row
    msg = Image(height=height, width=width, encoding=encoding, is_bigendian=big_endian,
                step=padded.shape[1])
    msg.header.stamp = stamp
    msg.header.frame_id = frame_id
    msg.data = padded.tobytes()
    return msg
