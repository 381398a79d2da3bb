"""``hydranet_node``: camera images in; labels, depth, normals, colour views and points out.

Receipt and work are decoupled: the subscription callback only drops the message into a
queue of one, and a worker thread takes the newest frame, runs the network and publishes.
A frame that arrives while the worker is busy replaces the waiting one (counted as dropped),
so latency never builds up. Outputs nobody subscribes to are not computed.

Pipelined (parameter ``pipeline``, enabled by default for GPU engines): a second thread builds and
publishes the messages of frame N while the worker already runs frame N+1; one frame waits
between them at most, and the publisher takes them in order, so each camera's outputs stay in
stamp order.
"""

from __future__ import annotations

import queue
import re
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import partial

import numpy as np

from diagnostic_msgs.msg import DiagnosticArray
from rcl_interfaces.msg import SetParametersResult
from rclpy.clock import Clock, ClockType
from rclpy.event_handler import SubscriptionEventCallbacks
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import DurabilityPolicy
from sensor_msgs.msg import CameraInfo, CompressedImage, Image

from ..errors import HydraNetError
from ..geometry import Intrinsics
from ..latest import LatestSlots
from ..outputs import (OUTPUTS, OutputSettings, class_ids)
from ..postprocess import prepare as prepare_postprocess
from ..predictor import Predictor, inference_size
from ..stats import NO_INPUT_S, FrameStats
from ..throttle import Throttle
from .camera_infos import QUEUE_DEPTH, CameraInfos
from .conversions import (DEPTH_INFO_TOPIC, ImageError, camera_intrinsics, compressed_to_rgb,
                          frame_message_stream, image_to_rgb, label_info_message,
                          output_topic_types)
from .diagnostics import diagnostic_array
from .lifecycle import exit_now, run_node
from .parameters import PARAM_BY_NAME, as_declared, choice_error, declare_parameters
from .qos import latched, profile, publisher_events, subscription_events
from .serialized import SideBySide, message_in_place, publish_all, unavailable

NODE_NAME = "hydranet"
#: Seconds between looks for a latched (transient-local) camera_info publisher.
LATCHED_CHECK_S = 0.5
#: Class ids -> names (vision_msgs/LabelInfo), latched, per camera.
LABEL_INFO_TOPIC = "segmentation/label_info"
WARN_PERIOD_S = 5.0
#: How long after a camera's first image its camera_info may still be on its way: a driver
#: sends both together, and the first image can be taken before the first camera_info.
CAMERA_INFO_GRACE_S = 2.0
#: How long a camera's first image waits for a camera_info where none has come yet (once).
FIRST_CAMERA_INFO_WAIT_S = 0.2
STOP_TIMEOUT_S = 1.5
#: The node's two threads, by name (see ``lifecycle.exit_now``).
WORKER_THREAD, PUBLISHER_THREAD = "hydranet-worker", "hydranet-publisher"


@dataclass
class Frame:
    msg: Image | CompressedImage
    received: float  # time.monotonic() at receipt


@dataclass
class Camera:
    """One input camera: where its topics live, its recent camera_infos, its publishers."""
    name: str  # "" for the single-camera layout
    infos: CameraInfos = field(default_factory=CameraInfos)
    info_topic: str = ""  # resolved, for warnings
    image_topic: str = ""  # resolved, for warnings
    #: time.monotonic() of its last image (of its subscription's opening before any)
    last_image: float = field(default_factory=time.monotonic)
    silence_logged: bool = False  # its silence (``NO_INPUT_S``) has been warned of
    images: int = 0  # received since the start
    #: its transient-local camera_info subscription, once a publisher offers that
    latched_info: object | None = None
    #: time.monotonic() of the first image decoded before any camera_info had come
    no_info_since: float | None = None
    info_came: threading.Event = field(default_factory=threading.Event)
    publishers: dict[str, object] = field(default_factory=dict)
    label_info: object | None = None  # its LabelInfo publisher, when vision_msgs is there

    def topic(self, relative: str) -> str:
        return f"{self.name}/{relative}" if self.name else relative


@dataclass
class Job:
    """A decoded frame on its way through the network."""
    camera: Camera
    frame: Frame
    rgb: np.ndarray
    intrinsics: Intrinsics | None
    info: CameraInfo | None
    wanted: set[str]


class HydraNetNode(Node):
    def __init__(self, **kwargs) -> None:
        super().__init__(NODE_NAME, **kwargs)
        declare_parameters(self)
        self.predictor: Predictor | None = None
        self.stats = FrameStats()
        self._warnings = Throttle(self.get_logger().warning, WARN_PERIOD_S)
        self._errors = Throttle(self.get_logger().error, WARN_PERIOD_S)
        self.cameras: dict[str, Camera] = {}
        self._slots: LatestSlots[Frame] = LatestSlots()
        self._stopping = threading.Event()
        self._output_lock = threading.Lock()
        self._worker: threading.Thread | None = None
        self._publisher: threading.Thread | None = None
        #: Pipelined: results waiting for the publishing thread (one at most).
        self._handoff: queue.Queue = queue.Queue(maxsize=1)
        #: How output messages are made: serialized in place where the arrays allow.
        self._make = None
        self._sender: SideBySide | None = None  # in-place frames from several threads

    # -- start-up ---------------------------------------------------------------------------

    def param(self, name: str):
        """A parameter's value; an unset string array (read-only ones cannot be given their
        empty default after declaration) is its default."""
        value = self.get_parameter_or(name)
        return PARAM_BY_NAME[name].default if value.type_ == Parameter.Type.NOT_SET else value.value

    # The engine's log and warning functions, silent once the context is shut down: the
    # engine logs from the worker, and a first frame (an OpenVINO export) can outlast a Ctrl-C,
    # when rcl could no longer send the line to /rosout and would print an error saying so.
    # Two call sites: rclpy's logger refuses two severities from one.

    def _engine_info(self, message: str) -> None:
        if self.context.ok():
            self.get_logger().info(message)

    def _engine_warning(self, message: str) -> None:
        if self.context.ok():
            self.get_logger().warning(message)

    def start(self) -> None:
        """Load the model, check the parameters, then open topics and start the worker."""
        names = camera_names(self.param("cameras"))
        logger = self.get_logger()
        self.predictor = Predictor.from_weights(
            self.param("weights"), self.param("preset") or None, self.param("device"),
            self.param("backend"), self.param("precision"), progress=False,
            log=self._engine_info, warn=self._engine_warning,
            calibration=self.param("calibration_images") or None)
        self.settings = self._read_settings()
        class_ids(self.predictor.preset, self.settings.pointcloud_exclude_classes)
        engine = self.predictor.engine
        if not engine.outputs_on_device:
            prepare_postprocess(engine.num_classes, self.predictor.has_normals)
        logger.info(f"HydraNet ready: {engine.num_classes} classes, {engine.num_tasks} tasks, "
                    f"preset '{self.predictor.preset.name}', {engine.describe()}")
        self.cameras = {name: Camera(name) for name in names}
        self._slots = LatestSlots(tuple(names))
        self._open_topics()
        self._make = self._message_maker(engine)
        if self._make is not None and self.param("publish_threads") > 1:
            self._sender = SideBySide(self.param("publish_threads"))
        self.add_pre_set_parameters_callback(as_declared)
        self.add_on_set_parameters_callback(self._validate_parameters)
        self.add_post_set_parameters_callback(self._apply_parameters)
        if self._wants_pipeline(engine):
            logger.info("pipelined: the network runs the next frame while this one is published")
            self._publisher = threading.Thread(target=self._publish_work,
                                               name=PUBLISHER_THREAD, daemon=True)
            self._publisher.start()
        self._worker = threading.Thread(target=self._work, name=WORKER_THREAD, daemon=True)
        self._worker.start()

    def _message_maker(self, engine):
        """Serialized in place (``serialized.py``), from the memory the outputs were made in
        with room for it (``message_room.py``), unless ``publish_in_place`` is off or rclpy
        cannot."""
        if not self.param("publish_in_place"):
            return None
        reason = unavailable(next((p for camera in self.cameras.values()
                                   for p in camera.publishers.values()), None))
        if reason is not None:
            self.get_logger().warning(f"publish_in_place: {reason}; publishing rclpy messages")
            return None
        threads = self.param("publish_threads")
        where = "the buffer they came back from the GPU in" if engine.outputs_on_device \
            else "the arrays they were made in"
        self.get_logger().info(f"publishing outputs serialized in place, from {where}"
                               + (f", from {threads} threads at once" if threads > 1 else ""))
        return message_in_place

    @property
    def pipelined(self) -> bool:
        return self._publisher is not None

    def _wants_pipeline(self, engine) -> bool:
        choice = self.param("pipeline")
        return engine.outputs_on_device if choice == "auto" else choice == "enabled"

    def _open_topics(self) -> None:
        logger = self.get_logger()
        in_rel = self.param("input_reliability")
        in_qos = profile(in_rel, self.param("input_depth"))
        compressed = self.param("image_transport") == "compressed"
        for camera in self.cameras.values():
            # as image_transport names it: the base topic (remapped, e.g. image:=...) and
            # the transport's suffix; remapping image/compressed itself works too
            topic = self.resolve_topic_name(camera.topic("image"))
            if compressed:
                topic = self.resolve_topic_name(f"{topic}/compressed")
            camera.image_topic, camera.last_image = topic, time.monotonic()
            self.create_subscription(CompressedImage if compressed else Image, topic,
                                     partial(self._on_image, camera.name), in_qos,
                                     event_callbacks=subscription_events(logger, topic, in_rel))
            info_topic = camera.info_topic = self.resolve_topic_name(camera.topic("camera_info"))
            self.create_subscription(CameraInfo, camera.topic("camera_info"),
                                     partial(self._on_camera_info, camera),
                                     profile(in_rel, QUEUE_DEPTH),
                                     event_callbacks=subscription_events(logger, info_topic, in_rel))
            logger.info(f"subscribed to '{topic}' ({in_rel}) and '{info_topic}'")
        self._sync_publishers()
        self._open_label_info()
        self._diagnostics = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        # on the steady clock: with use_sim_time and no /clock (a bag played without
        # --clock) a ROS-time timer never fires, and the reports that would say why stop
        steady = Clock(clock_type=ClockType.STEADY_TIME)
        self.create_timer(self.param("diagnostics_period"), self._publish_diagnostics,
                          clock=steady)
        self.create_timer(LATCHED_CHECK_S, self._subscribe_latched_infos, clock=steady)

    def _enabled(self) -> set[str]:
        """Outputs switched on (normals only where the model has that head)."""
        return {spec.name for spec in OUTPUTS if self.param(f"publish_{spec.name}")
                and (self.predictor.has_normals or "normals" not in spec.needs)}

    def _sync_publishers(self) -> None:
        """Per camera, one publisher per enabled output, plus depth/camera_info with depth."""
        topics = output_topic_types(self._enabled())
        reliability = self.param("output_reliability")
        qos = profile(reliability, self.param("output_depth"))
        with self._output_lock:
            for camera in self.cameras.values():
                publishers = camera.publishers
                for topic in [t for t in publishers if t not in topics]:
                    self.destroy_publisher(publishers.pop(topic))
                for topic, msg_type in topics.items():
                    if topic not in publishers:
                        name = camera.topic(topic)
                        events = publisher_events(self.get_logger(),
                                                  self.resolve_topic_name(name), reliability)
                        publishers[topic] = self.create_publisher(msg_type, name, qos,
                                                                  event_callbacks=events)

    def _open_label_info(self) -> None:
        """segmentation/label_info per camera, latched: the class names for consumers such as
        Nav2's semantic segmentation layer, sent before the first mask."""
        try:
            from vision_msgs.msg import LabelInfo, VisionClass
        except ImportError:
            self.get_logger().info(f"vision_msgs is not installed: '{LABEL_INFO_TOPIC}' (class "
                                   "names for navigation stacks) is not published; it comes "
                                   "with ROS (ros-$ROS_DISTRO-vision-msgs)")
            return
        self._label_info_types = (LabelInfo, VisionClass)
        for camera in self.cameras.values():
            camera.label_info = self.create_publisher(LabelInfo, camera.topic(LABEL_INFO_TOPIC),
                                                      latched())
        self._publish_label_info()

    def _publish_label_info(self) -> None:
        header = Image().header
        header.stamp = self.get_clock().now().to_msg()
        msg = label_info_message(*self._label_info_types, self.predictor.preset.class_names,
                                 header, self.param("label_info_threshold"))
        for camera in self.cameras.values():
            camera.label_info.publish(msg)

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
            if p.name not in PARAM_BY_NAME:  # rclpy's own, such as use_sim_time
                continue
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
        if any(p.name == "label_info_threshold" for p in params) and \
                any(c.label_info is not None for c in self.cameras.values()):
            self._publish_label_info()

    # -- receipt ----------------------------------------------------------------------------

    def _on_image(self, camera: str, msg) -> None:
        self.stats.received()
        source = self.cameras[camera]
        now, silent_since = time.monotonic(), source.last_image
        source.last_image = now
        source.images += 1
        if source.silence_logged:
            source.silence_logged = False
            self.get_logger().info(f"images on '{source.image_topic}' again, after "
                                   f"{now - silent_since:.0f} s")
        if self._slots.put(Frame(msg, now), camera):
            self.stats.dropped()

    def _on_camera_info(self, camera: Camera, msg: CameraInfo) -> None:
        camera.infos.add(msg)
        camera.info_came.set()

    # -- work -------------------------------------------------------------------------------

    def _work(self) -> None:
        gather_s = self.param("batch_wait") if len(self.cameras) > 1 else 0.0
        while frames := self._slots.take_all(gather_s=gather_s):
            try:
                self._process([job for name, frame in frames.items()
                               if (job := self._decode(self.cameras[name], frame)) is not None])
            except Exception as exc:  # an engine failure must not end the node
                self._failed([frame.msg for frame in frames.values()], exc)

    def _failed(self, msgs: list, exc: Exception) -> None:
        """One error line for frames that could not be processed, the same error once per
        ``WARN_PERIOD_S`` (an engine that fails on every frame would flood the log; the
        frames are counted in /diagnostics all the same); nothing while stopping."""
        if self._stopping.is_set() or not self.context.ok():
            return  # shutting down: publishing on a closed context fails, quietly
        for _ in msgs:
            self.stats.rejected("processing error")
        stamps = ", ".join(_stamp_text(msg) for msg in msgs)
        error = f"{type(exc).__name__}: {exc}"
        self._errors.warn(error, f"processing {len(msgs)} frame(s) ({stamps}) failed, "
                                 f"skipped: {error}")

    def _publish_work(self) -> None:
        """The pipeline's second stage: messages built and published in the order the
        worker finished the frames."""
        while not self._stopping.is_set():
            try:
                jobs, results, inference_s = self._handoff.get(timeout=0.1)
            except queue.Empty:
                continue
            try:
                for job, arrays in zip(jobs, results):
                    self._publish(job, arrays, inference_s)
            except Exception as exc:  # noqa: BLE001  a bad frame must not end the node
                self._failed([job.frame.msg for job in jobs], exc)

    def _decode(self, camera: Camera, frame: Frame) -> Job | None:
        """The frame as an RGB array with its intrinsics; None if nobody wants it or it is bad."""
        wanted = self._wanted(camera)
        if not wanted:
            self.stats.idle()
            return None
        msg = frame.msg
        try:
            rgb = compressed_to_rgb(msg) if isinstance(msg, CompressedImage) else image_to_rgb(msg)
        except ImageError as exc:
            self.stats.rejected(exc.field)
            self._warnings.warn(f"{camera.name}:{exc.field}",
                                f"skipping frame {_stamp_text(msg)}"
                                f"{_from(camera)}: {exc}")
            return None
        intrinsics, info = self._intrinsics(camera, msg, rgb.shape[1], rgb.shape[0], wanted)
        return Job(camera, frame, rgb, intrinsics, info, wanted)

    def _intrinsics(self, camera: Camera, msg, width: int, height: int,
                    wanted: set[str]) -> tuple[Intrinsics | None, CameraInfo | None]:
        """The camera's intrinsics and camera_info for this image; (None, None) before any
        camera_info or when it cannot describe the image (uncalibrated, another size): then
        the frame goes out without the point cloud and depth/camera_info, as the labels,
        depth and normals need neither, and a throttled warning says why where someone
        listens to what is missing (no camera_info: once none has come within
        ``CAMERA_INFO_GRACE_S`` of the first image, e.g. a camera_info topic misnamed). The
        first image waits a moment for a camera_info sent with it but taken after it. The
        camera_info stamped as the image serves where it has come (``CameraInfos``)."""
        info = camera.infos.for_image(msg.header)
        if info is None and camera.no_info_since is None and self._wants_info(camera, wanted):
            camera.info_came.wait(FIRST_CAMERA_INFO_WAIT_S)
            info = camera.infos.for_image(msg.header)
        try:
            if info is None:
                _check_camera_info_wait(camera)
                return None, None
            return camera_intrinsics(info, width, height), info
        except ImageError as exc:
            if self._wants_info(camera, wanted):
                self.stats.without_camera_info()
                self._warnings.warn(f"{camera.name}:{exc.field}",
                                    f"frame {_stamp_text(msg)}{_from(camera)} "
                                    f"published without the point cloud and depth/camera_info: "
                                    f"{exc}")
            return None, None

    def _wants_info(self, camera: Camera, wanted: set[str]) -> bool:
        """Whether someone listens to what needs camera_info (the cloud, depth/camera_info)."""
        return "points" in wanted or DEPTH_INFO_TOPIC in self._listened(camera)

    def _listened(self, camera: Camera) -> set[str]:
        """The camera's output topics that someone subscribes to."""
        with self._output_lock:
            return {topic for topic, pub in camera.publishers.items()
                    if pub.get_subscription_count() > 0}

    def _wanted(self, camera: Camera) -> set[str]:
        """Enabled outputs of a camera that someone listens to."""
        listened = self._listened(camera)
        wanted = {spec.name for spec in OUTPUTS if spec.topic in listened}
        if DEPTH_INFO_TOPIC in listened:
            wanted.add("depth")
        return wanted

    def _process(self, jobs: list[Job]) -> None:
        """One network call for all jobs, then each camera's outputs (made on the GPU by
        CUDA engines, on the host otherwise)."""
        if not jobs:
            return
        sizes = [inference_size(job.rgb.shape[:2], self.param("inference_width"),
                                self.param("inference_height")) for job in jobs]
        results, inference_s = self.predictor.outputs_many(
            [job.rgb for job in jobs], sizes, [job.wanted for job in jobs], self.settings,
            [job.intrinsics for job in jobs])
        self.stats.batch()
        if self._publisher is not None:
            self._hand_over((jobs, results, inference_s))
            return
        for job, arrays in zip(jobs, results):
            self._publish(job, arrays, inference_s)

    def _hand_over(self, item: tuple) -> None:
        """To the publishing thread, waiting while it still has a frame queued."""
        while not self._stopping.is_set():
            try:
                self._handoff.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def _publish(self, job: Job, arrays: Mapping[str, np.ndarray],
                 inference_s: float) -> None:
        header = job.frame.msg.header
        if self._stopping.is_set():
            return  # shutting down: publish all of a frame or nothing
        with self._output_lock:  # each message made as it is reached: navigation's first
            publishers = job.camera.publishers
            stream = ((publishers[topic], out_msg) for topic, out_msg in frame_message_stream(
                arrays, header, job.info, make=self._make) if topic in publishers)
            if self._sender is not None:  # serialized in place: all made already
                self._sender.publish(list(stream))
            else:
                publish_all(stream)
        now = self.get_clock().now()
        stamp_latency = (now.nanoseconds - _stamp_ns(header)) / 1e9
        self.stats.processed(inference_s, time.monotonic() - job.frame.received, stamp_latency)

    # -- diagnostics and shutdown -----------------------------------------------------------

    def _subscribe_latched_infos(self) -> None:
        """A transient-local camera_info subscription for each camera whose camera_info has
        a transient-local publisher: a calibration published once and latched before the
        node started reaches only such a subscription. Made only where one is offered: a
        volatile publisher (a camera driver's) would take it for an incompatible subscriber
        and warn of it in the driver's log."""
        for camera in self.cameras.values():
            if camera.latched_info is not None or not any(
                    info.qos_profile.durability == DurabilityPolicy.TRANSIENT_LOCAL
                    for info in self.get_publishers_info_by_topic(camera.info_topic)):
                continue
            # volatile publishers there too are served by the other subscription: that this
            # one cannot match them is expected, not a problem to log
            camera.latched_info = self.create_subscription(
                CameraInfo, camera.info_topic, partial(self._on_camera_info, camera), latched(),
                event_callbacks=SubscriptionEventCallbacks(incompatible_qos=lambda info: None))
            self.get_logger().info(f"'{camera.info_topic}' has a latched (transient local) "
                                   "publisher: subscribed to it as such too")

    def _publish_diagnostics(self) -> None:
        engine = self.predictor.engine
        static = {"device": engine.device, "backend": f"{engine.backend} {engine.precision}",
                  "weights": str(self.param("weights")),
                  "model": f"{engine.num_classes} classes, {engine.num_tasks} tasks",
                  "cameras": ", ".join(name or "(single)" for name in self.cameras)}
        if (failure := getattr(engine, "failure", None)) is not None:
            static["backend fallback"] = failure  # the backend asked for could not prepare
        snap = self.stats.snapshot()
        snap.silent_inputs = self._silent_inputs()
        self._diagnostics.publish(diagnostic_array(
            self.get_clock().now().to_msg(), f"{self.get_fully_qualified_name()}: HydraNet",
            engine.device, snap, static))

    def _silent_inputs(self) -> list[str]:
        """Image topics that sent nothing for ``NO_INPUT_S`` while someone subscribes to
        their camera's outputs. The first report of a silence logs a warning saying what may
        be wrong (the "no output" a consumer would otherwise see without a word); /diagnostics
        stays WARN while it lasts, and its end is logged."""
        now = time.monotonic()
        silent = [camera for camera in self.cameras.values()
                  if now - camera.last_image >= NO_INPUT_S and self._listened(camera)]
        for camera in [c for c in silent if not c.silence_logged]:
            camera.silence_logged = True
            self.get_logger().warning(f"no image on '{camera.image_topic}' for "
                                      f"{now - camera.last_image:.0f} s while its outputs have "
                                      f"subscribers: {self._silence_reason(camera)}")
        return [camera.image_topic for camera in silent]

    def _silence_reason(self, camera: Camera) -> str:
        """What a silent image topic's publishers suggest is wrong."""
        publishers = self.count_publishers(camera.image_topic)
        if not publishers:
            return "no publisher there: is the camera running and the topic remapped " \
                   "(image:=...)?"
        if camera.images:  # it delivered before: not a matter of QoS or transport
            return (f"{publishers} publisher(s) there, which delivered {camera.images} "
                    "image(s) before: has the camera stopped or stalled (a paused bag)?")
        return (f"{publishers} publisher(s) there, nothing delivered: see the log for 'QoS "
                "incompatible', or give the camera the large-data transport (README, Delivery)")

    def stop(self) -> None:
        """Stop the worker (and the publishing thread); a frame in flight finishes but is
        not published, a frame being published goes out whole."""
        self._stopping.set()
        self._slots.close()
        deadline = time.monotonic() + STOP_TIMEOUT_S
        for thread in (self._worker, self._publisher):
            if thread is not None:
                thread.join(max(0.0, deadline - time.monotonic()))
        if self._sender is not None:
            self._sender.close()


def _check_camera_info_wait(camera: Camera) -> None:
    """Nothing while a camera's first camera_info may still be on its way
    (``CAMERA_INFO_GRACE_S``); after that an ImageError naming the topic it is awaited on."""
    now = time.monotonic()
    if camera.no_info_since is None:
        camera.no_info_since = now
    waited = now - camera.no_info_since
    if waited >= CAMERA_INFO_GRACE_S:
        raise ImageError("camera_info", f"none has come on '{camera.info_topic}' in the "
                         f"{waited:.0f} s since the first image")


def _from(camera: Camera) -> str:
    """' from <camera>' in messages about a frame, where the node has several cameras."""
    return f" from {camera.name}" if camera.name else ""


#: A relative namespace as ROS 2 names allow it: tokens of letters, digits and underscores,
#: none starting with a digit (rcl would refuse anything else once the model had loaded).
NAMESPACE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(/[A-Za-z_][A-Za-z0-9_]*)*")


def camera_names(values: list[str]) -> list[str]:
    """The ``cameras`` parameter checked: relative namespaces, each once; [] is one camera."""
    names = [v.strip("/") for v in values]
    if not names:
        return [""]
    bad = [v for v, n in zip(values, names) if v.startswith("/") or not NAMESPACE.fullmatch(n)]
    if bad:
        raise HydraNetError(f"parameter cameras: {bad[0]!r} is not a relative namespace "
                            "(e.g. front or robot/left)")
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise HydraNetError(f"parameter cameras: {', '.join(duplicates)} listed twice")
    return names


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
    return run_node(create_node, NODE_NAME, args, on_exit=HydraNetNode.stop, large_data=True)


def entry_point() -> None:
    exit_now(main(), (WORKER_THREAD, PUBLISHER_THREAD))


if __name__ == "__main__":
    entry_point()
