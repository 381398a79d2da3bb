"""``hydranet_node``: camera images in; labels, depth, normals, colour views and points out.

Receipt and work are decoupled: the subscription callback only drops the message into a
queue of one, and a worker thread takes the newest frame, runs the network and publishes.
A frame that arrives while the worker is busy replaces the waiting one (counted as dropped),
so latency never builds up. Outputs nobody subscribes to are not computed.
"""

from __future__ import annotations

import sys
import threading
import time
from dataclasses import dataclass

from diagnostic_msgs.msg import DiagnosticArray
from rcl_interfaces.msg import SetParametersResult
from rclpy.node import Node
from rclpy.parameter import Parameter
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2

from ..errors import HydraNetError
from ..latest import LatestSlot
from ..outputs import (OUTPUT_BY_NAME, OUTPUTS, OutputSettings, class_ids, compute_outputs,
                       parts_needed)
from ..predictor import Predictor, inference_size
from ..stats import FrameStats
from ..throttle import Throttle
from .conversions import (ImageError, camera_info_for, camera_intrinsics, compressed_to_rgb,
                          image_to_rgb, output_message)
from .diagnostics import diagnostic_array
from .lifecycle import run_node
from .parameters import PARAM_BY_NAME, choice_error, declare_parameters
from .qos import profile, publisher_events, subscription_events

NODE_NAME = "hydranet"
WARN_PERIOD_S = 5.0
STOP_TIMEOUT_S = 1.5
#: Published with depth/image: the camera info that goes with it.
DEPTH_INFO_TOPIC = "depth/camera_info"
MESSAGE_TYPES = {"points": PointCloud2}


@dataclass
class Frame:
    msg: Image | CompressedImage
    received: float  # time.monotonic() at receipt


class HydraNetNode(Node):
    def __init__(self, **kwargs) -> None:
        super().__init__(NODE_NAME, **kwargs)
        declare_parameters(self)
        self.predictor: Predictor | None = None
        self.stats = FrameStats()
        self._warnings = Throttle(self.get_logger().warning, WARN_PERIOD_S)
        self._slot: LatestSlot[Frame] = LatestSlot()
        self._stopping = threading.Event()
        self._camera_info: CameraInfo | None = None
        self._output_publishers: dict[str, object] = {}
        self._output_lock = threading.Lock()
        self._worker: threading.Thread | None = None

    # -- start-up ---------------------------------------------------------------------------

    def param(self, name: str):
        return self.get_parameter(name).value

    def start(self) -> None:
        """Load the model, check the parameters, then open topics and start the worker."""
        self.predictor = Predictor.from_weights(self.param("weights"), self.param("preset") or None,
                                                self.param("device"), progress=False)
        self.settings = self._read_settings()
        class_ids(self.predictor.preset, self.settings.pointcloud_exclude_classes)
        model = self.predictor.model
        self.get_logger().info(
            f"HydraNet ready: {model.num_classes} classes, {model.num_tasks} tasks, preset "
            f"'{self.predictor.preset.name}', device {self.predictor.device}, backend torch")
        self._open_topics()
        self.add_on_set_parameters_callback(self._validate_parameters)
        self.add_post_set_parameters_callback(self._apply_parameters)
        self._worker = threading.Thread(target=self._work, name="hydranet-worker", daemon=True)
        self._worker.start()

    def _open_topics(self) -> None:
        logger = self.get_logger()
        in_rel = self.param("input_reliability")
        in_qos = profile(in_rel, self.param("input_depth"))
        if self.param("image_transport") == "compressed":
            topic = self.resolve_topic_name("image") + "/compressed"
            self.create_subscription(CompressedImage, topic, self._on_image, in_qos,
                                     event_callbacks=subscription_events(logger, topic, in_rel))
        else:
            topic = self.resolve_topic_name("image")
            self.create_subscription(Image, "image", self._on_image, in_qos,
                                     event_callbacks=subscription_events(logger, topic, in_rel))
        info_topic = self.resolve_topic_name("camera_info")
        self.create_subscription(CameraInfo, "camera_info", self._on_camera_info, in_qos,
                                 event_callbacks=subscription_events(logger, info_topic, in_rel))
        self._sync_publishers()
        self._diagnostics = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self.create_timer(self.param("diagnostics_period"), self._publish_diagnostics)
        self.get_logger().info(f"subscribed to '{topic}' ({in_rel}) and '{info_topic}'")

    def _enabled(self) -> set[str]:
        """Outputs switched on (normals only where the model has that head)."""
        return {spec.name for spec in OUTPUTS if self.param(f"publish_{spec.name}")
                and (self.predictor.has_normals or "normals" not in spec.needs)}

    def _sync_publishers(self) -> None:
        """One publisher per enabled output, plus depth/camera_info beside depth/image."""
        enabled = self._enabled()
        topics = {OUTPUT_BY_NAME[name].topic: MESSAGE_TYPES.get(name, Image) for name in enabled}
        if "depth" in enabled:
            topics[DEPTH_INFO_TOPIC] = CameraInfo
        reliability = self.param("output_reliability")
        qos = profile(reliability, self.param("output_depth"))
        with self._output_lock:
            for topic in [t for t in self._output_publishers if t not in topics]:
                self.destroy_publisher(self._output_publishers.pop(topic))
            for topic, msg_type in topics.items():
                if topic not in self._output_publishers:
                    events = publisher_events(self.get_logger(), self.resolve_topic_name(topic),
                                              reliability)
                    self._output_publishers[topic] = self.create_publisher(msg_type, topic, qos,
                                                                    event_callbacks=events)

    # -- parameters -------------------------------------------------------------------------

    def _read_settings(self) -> OutputSettings:
        return OutputSettings(
            overlay_alpha=self.param("overlay_alpha"),
            max_depth=self.param("max_depth"),
            pointcloud_stride=self.param("pointcloud_stride"),
            pointcloud_max_depth=self.param("pointcloud_max_depth"),
            pointcloud_organized=self.param("pointcloud_organized"),
            pointcloud_color=self.param("pointcloud_color"),
            pointcloud_exclude_classes=tuple(self.param("pointcloud_exclude_classes")),
        )

    def _validate_parameters(self, params: list[Parameter]) -> SetParametersResult:
        for p in params:
            problem = choice_error(PARAM_BY_NAME[p.name], p.value)
            if problem is None and p.name == "pointcloud_exclude_classes":
                try:
                    class_ids(self.predictor.preset, tuple(p.value))
                except HydraNetError as exc:
                    problem = f"pointcloud_exclude_classes: {exc}"
            if problem:
                return SetParametersResult(successful=False, reason=problem)
        return SetParametersResult(successful=True)

    def _apply_parameters(self, params: list[Parameter]) -> None:
        self.settings = self._read_settings()
        if any(p.name.startswith("publish_") for p in params):
            self._sync_publishers()

    # -- receipt ----------------------------------------------------------------------------

    def _on_image(self, msg) -> None:
        self.stats.received()
        if self._slot.put(Frame(msg, time.monotonic())):
            self.stats.dropped()

    def _on_camera_info(self, msg: CameraInfo) -> None:
        self._camera_info = msg

    # -- work -------------------------------------------------------------------------------

    def _work(self) -> None:
        while (frame := self._slot.take()) is not None:
            try:
                self._process(frame)
            except ImageError as exc:
                self.stats.rejected(exc.field)
                self._warnings.warn(exc.field, f"skipping frame {_stamp_text(frame.msg)}: {exc}")
            except Exception as exc:  # an engine failure must not end the node
                self.stats.rejected("processing error")
                self.get_logger().error(f"processing frame {_stamp_text(frame.msg)} failed, "
                                        f"skipped: {type(exc).__name__}: {exc}")

    def _wanted(self) -> set[str]:
        """Enabled outputs that someone listens to."""
        with self._output_lock:
            listened = {topic for topic, pub in self._output_publishers.items()
                        if pub.get_subscription_count() > 0}
        wanted = {spec.name for spec in OUTPUTS if spec.topic in listened}
        if DEPTH_INFO_TOPIC in listened:
            wanted.add("depth")
        return wanted

    def _process(self, frame: Frame) -> None:
        wanted = self._wanted()
        if not wanted:
            return
        msg = frame.msg
        rgb = compressed_to_rgb(msg) if isinstance(msg, CompressedImage) else image_to_rgb(msg)
        height, width = rgb.shape[:2]
        info = self._camera_info
        intrinsics = camera_intrinsics(info, width, height) if info is not None else None
        settings = self.settings
        started = time.perf_counter()
        size = inference_size((height, width), self.param("inference_width"),
                              self.param("inference_height"))
        pred = self.predictor.predict(rgb, size, parts_needed(wanted))
        inference_s = time.perf_counter() - started
        arrays = compute_outputs(rgb, pred, self.predictor.preset, settings, wanted, intrinsics)
        header = msg.header
        messages = {OUTPUT_BY_NAME[name].topic: output_message(name, header, array)
                    for name, array in arrays.items()}
        if "depth" in arrays and info is not None:
            messages[DEPTH_INFO_TOPIC] = camera_info_for(info, header)
        if self._stopping.is_set():
            return  # shutting down: publish all of a frame or nothing
        with self._output_lock:
            for topic, out_msg in messages.items():
                publisher = self._output_publishers.get(topic)
                if publisher is not None:
                    publisher.publish(out_msg)
        now = self.get_clock().now()
        stamp_latency = (now.nanoseconds - _stamp_ns(header)) / 1e9
        self.stats.processed(inference_s, time.monotonic() - frame.received, stamp_latency)

    # -- diagnostics and shutdown -----------------------------------------------------------

    def _publish_diagnostics(self) -> None:
        model = self.predictor.model
        static = {"device": str(self.predictor.device), "backend": "torch",
                  "weights": str(self.param("weights")),
                  "model": f"{model.num_classes} classes, {model.num_tasks} tasks"}
        self._diagnostics.publish(diagnostic_array(
            self.get_clock().now().to_msg(), f"{self.get_fully_qualified_name()}: HydraNet",
            str(self.predictor.device), self.stats.snapshot(), static))

    def stop(self) -> None:
        """Stop the worker; a frame in flight finishes but is not published."""
        self._stopping.set()
        self._slot.close()
        if self._worker is not None:
            self._worker.join(STOP_TIMEOUT_S)


def _stamp_ns(header) -> int:
    return header.stamp.sec * 1_000_000_000 + header.stamp.nanosec


def _stamp_text(msg) -> str:
    return f"{msg.header.stamp.sec}.{msg.header.stamp.nanosec:09d}"


def create_node() -> HydraNetNode:
    node = HydraNetNode()
    try:
        node.start()
    except BaseException:
        node.destroy_node()
        raise
    return node


def main(args: list[str] | None = None) -> int:
    return run_node(create_node, NODE_NAME, args, on_exit=HydraNetNode.stop)


def entry_point() -> None:
    sys.exit(main())


if __name__ == "__main__":
    entry_point()
