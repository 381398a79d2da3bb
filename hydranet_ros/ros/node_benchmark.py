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
from rclpy.executors import MultiThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import QoSProfile, ReliabilityPolicy
from rclpy.utilities import get_rmw_implementation_identifier
from sensor_msgs.msg import CameraInfo, Image

from ..outputs import OUTPUTS
from .conversions import output_topic_types
from .node import HydraNetNode
from .transport import configure_large_data

FRAME_TIMEOUT_S = 30.0


def _camera_info(width: int, height: int) -> CameraInfo:
    f = 0.8 * width
    info = CameraInfo(width=width, height=height, distortion_model="plumb_bob")
    info.k = [f, 0.0, width / 2, 0.0, f, height / 2, 0.0, 0.0, 1.0]
    info.p = [f, 0.0, width / 2, 0.0, 0.0, f, height / 2, 0.0, 0.0, 0.0, 1.0, 0.0]
    info.header.frame_id = "camera_optical_frame"
    return info


def node_end_to_end(weights: Path, backend: str, precision: str, image: np.ndarray,
                    frames: int = 20, warmup: int = 3, device: str = "cpu") -> dict:
    """Median and p90 latencies (ms) of the node with every output on and listened to."""
    height, width = image.shape[:2]
    rclpy.init()
    configure_large_data(get_rmw_implementation_identifier())  # it publishes 640x480 images
    overrides = [Parameter("weights", value=str(weights)), Parameter("device", value=device),
                 Parameter("backend", value=backend), Parameter("precision", value=precision),
                 Parameter("max_depth", value=1000.0),
                 # int8 of a model without a calibration folder: held-out synthetic frames
                 Parameter("calibration_images", value="synthetic"),
                 # one statistics window for the whole run (each report starts a new one)
                 Parameter("diagnostics_period", value=60.0)]
    node = HydraNetNode(parameter_overrides=overrides, namespace="/hydranet_bench")
    driver = Node("hydranet_bench_driver", namespace="/hydranet_bench")
    executor = MultiThreadedExecutor(num_threads=2)
    try:
        node.start()
        reliable = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE)
        topics = output_topic_types(spec.name for spec in OUTPUTS
                                    if node.predictor.has_normals or "normals" not in spec.needs)
        arrived: dict[str, float] = {}
        lock = threading.Condition()

        def on_output(topic: str, _msg) -> None:
            with lock:
                arrived[topic] = time.perf_counter()
                lock.notify_all()
        subs = [driver.create_subscription(msg_type, t, lambda m, t=t: on_output(t, m), reliable,
                                           raw=True) for t, msg_type in topics.items()]
        image_pub = driver.create_publisher(Image, "image", reliable)
        info_pub = driver.create_publisher(CameraInfo, "camera_info", reliable)
        executor.add_node(node)
        executor.add_node(driver)
        spinner = threading.Thread(target=executor.spin, daemon=True)
        spinner.start()
        _wait(lambda: all(p.get_subscription_count() > 0 for p in node.cameras[""].publishers.values())
              and image_pub.get_subscription_count() > 0, FRAME_TIMEOUT_S)
        info = _camera_info(width, height)
        msg = Image(height=height, width=width, encoding="rgb8", step=width * 3,
                    data=image.tobytes())
        msg.header.frame_id = "camera_optical_frame"
        round_trip: list[float] = []
        for i in range(warmup + frames):
            if i == warmup:
                node.stats.snapshot()  # start the measured window
            with lock:
                arrived.clear()
            msg.header.stamp = info.header.stamp = driver.get_clock().now().to_msg()
            info_pub.publish(info)
            time.sleep(0.01)  # camera_info first, as drivers do
            sent = time.perf_counter()
            image_pub.publish(msg)
            with lock:
                if not lock.wait_for(lambda: len(arrived) == len(topics), FRAME_TIMEOUT_S):
                    raise RuntimeError(f"outputs missing after {FRAME_TIMEOUT_S:.0f} s: "
                                       f"{sorted(set(topics) - set(arrived))}")
                if i >= warmup:
                    round_trip.append(max(arrived.values()) - sent)
        snap = node.stats.snapshot()
        for sub in subs:
            driver.destroy_subscription(sub)
        return {"backend": node.predictor.engine.describe(), "size": f"{width}x{height}",
                "frames": len(snap.receipt_latency_s),
                "node_receipt_to_publish_ms": _summary(snap.receipt_latency_s),
                "node_inference_ms": _summary(snap.inference_s),
                "driver_publish_to_last_output_ms": _summary(round_trip)}
    finally:
        executor.shutdown()
        node.stop()
        node.destroy_node()
        driver.destroy_node()
        rclpy.try_shutdown()


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
