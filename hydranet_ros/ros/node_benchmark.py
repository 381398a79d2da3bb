"""The whole node, end to end, as a consumer in another process sees it: an Image message in,
every output published and received.

hydranet_node runs in this process (its own statistics are read exactly) and nothing else
does: a driver in a child process (``python -m hydranet_ros.ros.node_benchmark``) is the
camera and the consumer. It publishes a frame (640x480 in ``hydranet-bench``), waits until
every output of that frame has arrived (subscribed raw, reliable), then sends the next, so
that no queue forms. Reports the node's receipt-to-last-publish latency and its inference
time, and the times from the driver's publication of the image to its reception of the last
output (the DDS reader's timestamp) and to that output's callback, which add the transport
both ways, to the reception of the last of what a navigation stack waits for
(``outputs.NAVIGATION_OUTPUTS``: mask, confidence and point cloud), and the median reception
time of each output. With the driver in this process instead, its reception of about 15 MB per frame
took the interpreter and the DDS intra-process copies from the node's own thread.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import rclpy
from rclpy.context import Context
from rclpy.executors import SingleThreadedExecutor
from rclpy.parameter import Parameter
from rclpy.signals import SignalHandlerOptions
from rclpy.utilities import get_rmw_implementation_identifier

from ..entry_points import EXIT_INTERRUPTED, child_environment, exit_with_parent
from ..memory import keep_freed_memory
from ..outputs import NAVIGATION_OUTPUTS, OUTPUT_BY_NAME, OUTPUTS
from .conversions import output_topic_types
from .delivery_benchmark import cdr_stamp
from .node import HydraNetNode
from .transport import configure_large_data

FRAME_TIMEOUT_S = 30.0
START_TIMEOUT_S = 60.0
NAMESPACE = "/hydranet_bench"
FRAME_ID = "camera_optical_frame"
#: Starts the driver's replies on its stdout, which other libraries may write to as well.
REPLY = "hydranet-bench-driver: "


class NodeUnderTest:
    """hydranet_node alone in this process, spun in a thread until ``close``."""

    def __init__(self, weights: Path, backend: str, precision: str, device: str,
                 namespace: str, params: dict | None = None) -> None:
        # a context of its own: measurements one after another never share one
        self.context = Context()
        # signals stay the command's: Ctrl-C and SIGTERM raise KeyboardInterrupt, and the
        # bench cleans up (rclpy's own handler shut the context and raised elsewhere)
        rclpy.init(context=self.context, signal_handler_options=SignalHandlerOptions.NO)
        configure_large_data(get_rmw_implementation_identifier())
        overrides = [Parameter("weights", value=str(weights)), Parameter("device", value=device),
                     Parameter("backend", value=backend), Parameter("precision", value=precision),
                     Parameter("max_depth", value=1000.0),
                     # int8 of a model without a calibration folder: held-out synthetic frames
                     Parameter("calibration_images", value="synthetic"),
                     # one statistics window for the whole run (each report starts a new one)
                     Parameter("diagnostics_period", value=60.0)]
        overrides += [Parameter(name, value=value) for name, value in (params or {}).items()]
        self.node = HydraNetNode(parameter_overrides=overrides, namespace=namespace,
                                 context=self.context)
        # as hydranet_node's own process spins it (rclpy.spin); rclpy's MultiThreadedExecutor
        # ran the image callback up to a second after the image had arrived
        self.executor = SingleThreadedExecutor(context=self.context)
        self.node.start()
        self.executor.add_node(self.node)
        threading.Thread(target=self.executor.spin, daemon=True).start()

    def topics(self) -> dict[str, type]:
        """Every output this node's model makes, by relative topic."""
        return output_topic_types(spec.name for spec in OUTPUTS
                                  if self.node.predictor.has_normals or "normals" not in spec.needs)

    def close(self) -> None:
        self.executor.shutdown()
        self.node.stop()
        self.node.destroy_node()
        rclpy.try_shutdown(context=self.context)


class Driver:
    """The child process's side: camera and consumer of one node, one frame at a time."""

    def __init__(self, namespace: str, topics: list[str], size: tuple[int, int]) -> None:
        from rclpy.qos import QoSProfile, ReliabilityPolicy
        from sensor_msgs.msg import CameraInfo, Image
        from std_msgs.msg import Header

        from ..benchmark import bench_image
        from ..geometry import Intrinsics
        from .conversions import image_message
        from .synthetic_camera import camera_info_message

        keep_freed_memory()  # a subscriber of large samples, set up as the README advises
        rclpy.init(signal_handler_options=SignalHandlerOptions.NO)
        configure_large_data(get_rmw_implementation_identifier())  # it publishes images
        self.node = rclpy.create_node("hydranet_bench_driver", namespace=namespace)
        reliable = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE)
        self.topics = topics
        self.navigation = [OUTPUT_BY_NAME[name].topic for name in NAVIGATION_OUTPUTS
                           if OUTPUT_BY_NAME[name].topic in topics]
        types = output_topic_types(spec.name for spec in OUTPUTS)
        self.arrived: dict[str, tuple[float, float]] = {}
        self.stamp: tuple[int, int] | None = None
        self.subs = [self.node.create_subscription(
            types[t], t, lambda raw, info, t=t: self._on_output(t, raw, info), reliable, raw=True)
            for t in topics]
        self.image_pub = self.node.create_publisher(Image, "image", reliable)
        self.info_pub = self.node.create_publisher(CameraInfo, "camera_info", reliable)
        height, width = size
        f = 0.8 * width
        self.image = image_message(Header(frame_id=FRAME_ID), bench_image(size))
        self.info = camera_info_message(Header(frame_id=FRAME_ID),
                                        Intrinsics(f, f, width / 2, height / 2, width, height))

    def _on_output(self, topic: str, raw: bytes, info) -> None:
        if cdr_stamp(raw) == self.stamp:
            self.arrived.setdefault(topic, (info["received_timestamp"] * 1e-9, time.time()))

    def matched(self) -> bool:
        return all(s.get_publisher_count() > 0 for s in self.subs) and \
            self.image_pub.get_subscription_count() > 0 and \
            self.info_pub.get_subscription_count() > 0

    def camera_info(self, stamp=None) -> dict:
        """camera_info, stamped ``stamp`` or now; alone, so that the node has it before the
        first image (which could otherwise be taken first and go out without the point
        cloud)."""
        self.info.header.stamp = stamp if stamp is not None else \
            self.node.get_clock().now().to_msg()
        self.info_pub.publish(self.info)
        self.spin_until(lambda: False, 0.01)
        return {"sent": "camera_info"}

    def spin_until(self, condition, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                return False
            rclpy.spin_once(self.node, timeout_sec=0.01)
        return True

    def frame(self) -> dict:
        """camera_info, then the image (as drivers do), stamped now; when its outputs came,
        from the image's publication."""
        self.image.header.stamp = self.node.get_clock().now().to_msg()
        self.stamp = (self.image.header.stamp.sec, self.image.header.stamp.nanosec)
        self.arrived = {}
        self.camera_info(self.image.header.stamp)  # camera_info first
        sent = time.time()
        self.image_pub.publish(self.image)
        if not self.spin_until(lambda: len(self.arrived) == len(self.topics), FRAME_TIMEOUT_S):
            return {"missing": sorted(set(self.topics) - set(self.arrived))}
        return {"reception_ms": (max(r for r, _ in self.arrived.values()) - sent) * 1e3,
                "navigation_ms": (max(self.arrived[t][0] for t in self.navigation) - sent) * 1e3
                if self.navigation else None,
                "callback_ms": (max(c for _, c in self.arrived.values()) - sent) * 1e3,
                "by_topic_ms": {t: (r - sent) * 1e3 for t, (r, _) in self.arrived.items()}}


def driver_main(argv: list[str] | None = None) -> int:
    """The child: 'ready' once matched, then one JSON line per 'frame' or 'camera_info' line
    on stdin, each after ``REPLY``."""
    parser = argparse.ArgumentParser(description="hydranet node benchmark driver (internal)")
    parser.add_argument("--namespace", required=True)
    parser.add_argument("--topics", required=True, help="comma-separated relative topics")
    parser.add_argument("--height", type=int, required=True)
    parser.add_argument("--width", type=int, required=True)
    args = parser.parse_args(argv)
    exit_with_parent()  # the bench killed, its driver goes too
    try:
        driver = Driver(args.namespace, args.topics.split(","), (args.height, args.width))
        if not driver.spin_until(driver.matched, START_TIMEOUT_S):
            print(REPLY + json.dumps({"error": "the driver and the node did not discover "
                                                 "each other"}), flush=True)
            return 1
        print(REPLY + "ready", flush=True)
        commands = {"frame": driver.frame, "camera_info": driver.camera_info}
        for line in sys.stdin:
            if line.strip() not in commands:
                break
            print(REPLY + json.dumps(commands[line.strip()]()), flush=True)
        driver.node.destroy_node()
    except KeyboardInterrupt:  # Ctrl-C reaches the whole group: the bench says it, not this
        return EXIT_INTERRUPTED
    finally:
        rclpy.try_shutdown()
    return 0


def _start_driver(namespace: str, topics: list[str], size: tuple[int, int]) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "hydranet_ros.ros.node_benchmark", "--namespace", namespace,
         "--topics", ",".join(topics), "--height", str(size[0]), "--width", str(size[1])],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1", **child_environment()})


def _reply(driver: subprocess.Popen, timeout: float) -> str:
    """The driver's next reply (other lines on its stdout are passed on to stderr); an error
    naming the wait when it exits or stays silent."""
    replies: list[str] = []

    def read() -> None:
        for line in driver.stdout:
            if line.startswith(REPLY):
                replies.append(line[len(REPLY):].strip())
                return
            sys.stderr.write(line)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(timeout)
    if not replies:
        state = "exited" if driver.poll() is not None else f"was silent for {timeout:.0f} s"
        raise RuntimeError(f"the benchmark's driver {state}")
    return replies[0]


def _command(driver: subprocess.Popen, command: str, timeout: float) -> dict:
    driver.stdin.write(command + "\n")
    driver.stdin.flush()
    return json.loads(_reply(driver, timeout))


def _give_camera_info(node: HydraNetNode, driver: subprocess.Popen) -> None:
    """The driver's camera_info (again, a best-effort input may lose it) until the node has
    it."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while any(camera.infos.newest is None for camera in node.cameras.values()):
        if time.monotonic() > deadline:
            raise RuntimeError(f"the node had no camera_info from the benchmark's driver "
                               f"after {START_TIMEOUT_S:.0f} s")
        _command(driver, "camera_info", START_TIMEOUT_S)
        time.sleep(0.1)


def node_end_to_end(weights: Path, backend: str, precision: str, image_size: tuple[int, int],
                    frames: int = 20, warmup: int = 3, device: str = "cpu",
                    params: dict | None = None) -> dict:
    """Median and p90 latencies (ms) of the node with every output on and listened to by a
    consumer in another process, one frame at a time."""
    namespace = f"{NAMESPACE}_{os.getpid()}"
    bench = NodeUnderTest(weights, backend, precision, device, namespace, params)
    try:
        driver = _start_driver(namespace, list(bench.topics()), image_size)
    except BaseException:
        bench.close()
        raise
    try:
        reply = _reply(driver, START_TIMEOUT_S)
        if reply != "ready":
            raise RuntimeError(f"the benchmark's driver: {json.loads(reply).get('error', reply)}")
        _give_camera_info(bench.node, driver)
        reception: list[float] = []
        callback: list[float] = []
        navigation: list[float] = []
        by_topic: dict[str, list[float]] = {}
        for i in range(warmup + frames):
            if i == warmup:
                bench.node.stats.snapshot()  # start the measured window
            result = _command(driver, "frame", FRAME_TIMEOUT_S + 5)
            if "missing" in result:
                raise RuntimeError(f"outputs missing after {FRAME_TIMEOUT_S:.0f} s: "
                                   f"{result['missing']}")
            if i >= warmup:
                reception.append(result["reception_ms"])
                callback.append(result["callback_ms"])
                if result["navigation_ms"] is not None:
                    navigation.append(result["navigation_ms"])
                for topic, ms in result["by_topic_ms"].items():
                    by_topic.setdefault(topic, []).append(ms)
        snap = bench.node.stats.snapshot()
        return {"backend": bench.node.predictor.engine.describe(),
                "size": f"{image_size[1]}x{image_size[0]}",
                "frames": len(snap.receipt_latency_s),
                "pipeline": (params or {}).get("pipeline", "auto"),
                "pipelined": bench.node.pipelined,
                "publish_threads": bench.node.param("publish_threads"),
                "node_receipt_to_publish_ms": _summary(np.asarray(snap.receipt_latency_s) * 1e3),
                "node_inference_ms": _summary(np.asarray(snap.inference_s) * 1e3),
                "consumer_send_to_last_reception_ms": _summary(reception),
                "consumer_send_to_last_callback_ms": _summary(callback),
                # the last of the outputs a navigation stack waits for (NAVIGATION_OUTPUTS)
                "consumer_send_to_navigation_inputs_ms":
                    _summary(navigation) if navigation else None,
                "consumer_send_to_reception_p50_ms_by_topic": {
                    topic: _summary(values)["median"] for topic, values in by_topic.items()}}
    finally:
        if driver.poll() is None:
            driver.stdin.close()  # the driver's loop ends, it shuts down
            try:
                driver.wait(10)
            except subprocess.TimeoutExpired:
                driver.kill()
                driver.wait()
        bench.close()


def _summary(values_ms) -> dict:
    values = np.asarray(values_ms, dtype=float)
    return {"median": round(float(np.median(values)), 1),
            "p90": round(float(np.percentile(values, 90)), 1)}


if __name__ == "__main__":
    sys.exit(driver_main())
