"""The whole node, end to end: an Image message in, every output published.

Runs hydranet_node in this process beside a driver node that publishes 640x480 frames and
listens to every output (outputs nobody listens to are not computed; the driver takes them
serialised, so that it does not compete with the node for the interpreter), one frame at a
time so that no queue forms. Reports the node's own receipt-to-last-publish latency and the driver's
publish-to-last-receipt time (which adds DDS transport both ways).
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import rclpy
from rclpy.context import Context
from rclpy.executors import MultiThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import QoSProfile, ReliabilityPolicy
from rclpy.utilities import get_rmw_implementation_identifier
from sensor_msgs.msg import CameraInfo, Image
from std_msgs.msg import Header

from ..outputs import OUTPUTS
from .conversions import image_message, output_topic_types
from .node import HydraNetNode
from .transport import configure_large_data

FRAME_TIMEOUT_S = 30.0
NAMESPACE = "/hydranet_bench"


def _camera_info(width: int, height: int) -> CameraInfo:
    f = 0.8 * width
    info = CameraInfo(width=width, height=height, distortion_model="plumb_bob")
    info.k = [f, 0.0, width / 2, 0.0, f, height / 2, 0.0, 0.0, 1.0]
    info.p = [f, 0.0, width / 2, 0.0, 0.0, f, height / 2, 0.0, 0.0, 0.0, 1.0, 0.0]
    info.header.frame_id = "camera_optical_frame"
    return info


class BenchGraph:
    """hydranet_node and a driver node in this process, every output listened to; spun by
    a two-thread executor until ``close``."""

    def __init__(self, weights: Path, backend: str, precision: str, device: str,
                 size: tuple[int, int], params: dict | None = None) -> None:
        # a context of its own: measurements one after another never share one
        self.context = Context()
        rclpy.init(context=self.context)
        configure_large_data(get_rmw_implementation_identifier())  # it publishes 640x480 images
        overrides = [Parameter("weights", value=str(weights)), Parameter("device", value=device),
                     Parameter("backend", value=backend), Parameter("precision", value=precision),
                     Parameter("max_depth", value=1000.0),
                     # int8 of a model without a calibration folder: held-out synthetic frames
                     Parameter("calibration_images", value="synthetic"),
                     # one statistics window for the whole run (each report starts a new one)
                     Parameter("diagnostics_period", value=60.0)]
        overrides += [Parameter(name, value=value) for name, value in (params or {}).items()]
        self.node = HydraNetNode(parameter_overrides=overrides, namespace=NAMESPACE,
                                 context=self.context)
        self.driver = Node("hydranet_bench_driver", namespace=NAMESPACE, context=self.context)
        self.executor = MultiThreadedExecutor(num_threads=2, context=self.context)
        self.arrived: dict[str, float] = {}
        self.lock = threading.Condition()
        self.node.start()
        reliable = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE)
        self.topics = output_topic_types(spec.name for spec in OUTPUTS if
                                         self.node.predictor.has_normals or "normals" not in spec.needs)
        self.subs = [self.driver.create_subscription(msg_type, t, lambda m, t=t: self._on_output(t),
                                                     reliable, raw=True)
                     for t, msg_type in self.topics.items()]
        self.image_pub = self.driver.create_publisher(Image, "image", reliable)
        self.info_pub = self.driver.create_publisher(CameraInfo, "camera_info", reliable)
        self.executor.add_node(self.node)
        self.executor.add_node(self.driver)
        threading.Thread(target=self.executor.spin, daemon=True).start()
        _wait(lambda: all(p.get_subscription_count() > 0
                          for p in self.node.cameras[""].publishers.values())
              and self.image_pub.get_subscription_count() > 0, FRAME_TIMEOUT_S)
        height, width = size
        self.info = _camera_info(width, height)

    def _on_output(self, topic: str) -> None:
        with self.lock:
            self.arrived[topic] = time.perf_counter()
            self.lock.notify_all()

    def send(self, msg: Image) -> float:
        """camera_info, then the image (as drivers do), stamped now; the time the image was
        sent."""
        msg.header.stamp = self.info.header.stamp = self.driver.get_clock().now().to_msg()
        self.info_pub.publish(self.info)
        time.sleep(0.01)  # camera_info first
        sent = time.perf_counter()
        self.image_pub.publish(msg)
        return sent

    def close(self) -> None:
        for sub in self.subs:
            self.driver.destroy_subscription(sub)
        self.executor.shutdown()
        self.node.stop()
        self.node.destroy_node()
        self.driver.destroy_node()
        rclpy.try_shutdown(context=self.context)


def node_end_to_end(weights: Path, backend: str, precision: str, image: np.ndarray,
                    frames: int = 20, warmup: int = 3, device: str = "cpu",
                    params: dict | None = None) -> dict:
    """Median and p90 latencies (ms) of the node with every output on and listened to."""
    bench = BenchGraph(weights, backend, precision, device, image.shape[:2], params=params)
    try:
        msg = image_message(Header(frame_id="camera_optical_frame"), image)
        round_trip: list[float] = []
        for i in range(warmup + frames):
            if i == warmup:
                bench.node.stats.snapshot()  # start the measured window
            with bench.lock:
                bench.arrived.clear()
            sent = bench.send(msg)
            with bench.lock:
                if not bench.lock.wait_for(lambda: len(bench.arrived) == len(bench.topics),
                                           FRAME_TIMEOUT_S):
                    raise RuntimeError(f"outputs missing after {FRAME_TIMEOUT_S:.0f} s: "
                                       f"{sorted(set(bench.topics) - set(bench.arrived))}")
                if i >= warmup:
                    round_trip.append(max(bench.arrived.values()) - sent)
        snap = bench.node.stats.snapshot()
        return {"backend": bench.node.predictor.engine.describe(),
                "size": f"{image.shape[1]}x{image.shape[0]}",
                "frames": len(snap.receipt_latency_s),
                "pipeline": (params or {}).get("pipeline", "auto"),
                "pipelined": bench.node.pipelined,
                "node_receipt_to_publish_ms": _summary(snap.receipt_latency_s),
                "node_inference_ms": _summary(snap.inference_s),
                "driver_publish_to_last_output_ms": _summary(round_trip)}
    finally:
        bench.close()


def _wait(condition, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError("the benchmark's driver and the node did not discover each other")
        time.sleep(0.05)


def _summary(seconds: list[float]) -> dict:
    values = np.asarray(seconds) * 1e3
    return {"median": round(float(np.median(values)), 1),
            "p90": round(float(np.percentile(values, 90)), 1)}
