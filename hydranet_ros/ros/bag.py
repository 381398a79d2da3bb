"""Offline annotation of rosbag2 recordings (MCAP or sqlite3), with no ROS install.

Every message of the input is copied unchanged; the node's outputs for each selected camera
frame are added on the topics and types the live node publishes (under the image topic's
namespace), with the frame's header and recorded at the frame's receive time, so that
playing the result back looks as if the node had run. The output is written aside and moved
into place when finished (``staging.py``): a failed or killed run leaves no half-written
bag, and an earlier output is replaced only once the new one is complete. Decoding,
post-processing and message building are the live node's own functions; the messages are
the ``rosbags`` library's and serialise to the same CDR bytes.
"""

from __future__ import annotations

import os
import shutil
import time
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import numpy as np

from ..errors import HydraNetError, one_line
from ..outputs import OUTPUT_BY_NAME, OUTPUTS, OutputSettings
from ..paths import overlapping
from ..predictor import Predictor, inference_size
from ..staging import (RECORD, partial_folder, publish, read_record, remove_made_folders,
                       remove_partials)
from .camera_infos import CameraInfos
from .conversions import (DEPTH_INFO_TOPIC, ImageError, MessageKit, camera_intrinsics,
                          compressed_to_rgb, frame_messages, image_to_rgb, output_topic_types)

IMAGE = "sensor_msgs/msg/Image"
COMPRESSED = "sensor_msgs/msg/CompressedImage"
CAMERA_INFO = "sensor_msgs/msg/CameraInfo"
POINTCLOUD = "sensor_msgs/msg/PointCloud2"
STORAGES = ("mcap", "sqlite3")
#: What a bag given as one file is named (a bag folder holds metadata.yaml).
BAG_FILE_SUFFIXES = (".mcap", ".db3")
DEFAULT_OUTPUTS = ("labels", "depth", "normals", "points")
#: rosbag2 metadata version written (read by Jazzy and later).
BAG_VERSION = 8

if TYPE_CHECKING:
    from rosbags.rosbag2 import Reader


def _rosbags():
    try:
        from rosbags.rosbag2 import Reader, StoragePlugin, Writer
        from rosbags.typesys import Stores, get_typestore
    except ImportError as exc:
        raise HydraNetError(f"hydranet-bag needs the 'rosbags' package ({exc}); "
                            "pip install rosbags") from None
    return Reader, Writer, StoragePlugin, get_typestore(Stores.ROS2_KILTED)


def open_reader(path: Path) -> Reader:
    """``path``'s rosbags reader, opened. What rosbags finds wrong (its ReaderError, or an
    OSError such as a missing metadata.yaml or an unreadable file) becomes one line naming
    the bag instead of a traceback."""
    reader_cls = _rosbags()[0]
    from rosbags.rosbag2 import ReaderError
    try:
        reader = reader_cls(path)
        reader.open()
    except (ReaderError, OSError) as exc:
        raise HydraNetError(f"{path} is not a readable rosbag2: {type(exc).__name__}: "
                            f"{one_line(exc)}") from None
    return reader


def _rosbags_with_data(cls: type, fields: dict, data: np.ndarray):
    """rosbags messages take uint8[] as a numpy array (here a byte view, no copy)."""
    return cls(**fields, data=data.reshape(-1).view(np.uint8))


def rosbags_kit(typestore) -> MessageKit:
    types = typestore.types
    return MessageKit(types[IMAGE], types[POINTCLOUD], types["sensor_msgs/msg/PointField"],
                      types[CAMERA_INFO], _rosbags_with_data)


def camera_namespace(image_topic: str, msgtype: str) -> str:
    """/cam/image_raw -> /cam; a compressed topic (/cam/image/compressed) -> /cam."""
    topic = image_topic.rstrip("/")
    if msgtype == COMPRESSED and topic.endswith("/compressed"):
        topic = topic[:-len("/compressed")]
    return topic.rsplit("/", 1)[0]


def storage_of(path: Path) -> str:
    if path.is_dir():
        return "mcap" if any(path.glob("*.mcap")) else "sqlite3"
    return "mcap" if path.suffix == ".mcap" else "sqlite3"


class WriteFailed(HydraNetError):
    """Writing the output bag failed part way (a full disk): the input is not to blame."""


@dataclass
class BagRequest:
    input: Path
    output: Path
    image_topic: str
    info_topic: str | None = None  # None: <namespace>/camera_info when the bag has it
    outputs: tuple[str, ...] = DEFAULT_OUTPUTS
    storage: str | None = None  # None: the input's
    every: int = 1
    start_s: float = 0.0  # from the bag's first message
    end_s: float | None = None
    batch: int = 1
    inference_size: tuple[int, int] = (0, 0)  # width, height as the node's parameters
    settings: OutputSettings = field(default_factory=OutputSettings)
    overwrite: bool = False
    #: What the finished output records (``staging.RECORD``); None: what hydranet-bag
    #: records (the input, topics, outputs, counts, and whether it was interrupted).
    record: dict | None = None
    #: Whether an interrupted run's output (valid, holding what was done) is kept.
    keep_interrupted: bool = True


@dataclass
class BagResult:
    frames: int = 0  # annotated
    skipped: int = 0  # unreadable frames
    #: why frames were skipped -> how many
    skip_reasons: dict[str, int] = field(default_factory=dict)
    #: output topic -> messages written on it
    added: dict[str, int] = field(default_factory=dict)
    #: annotated without the point cloud and depth/camera_info: camera_info unusable
    without_cloud: int = 0
    messages: int = 0  # copied from the input
    interrupted: bool = False
    #: Where the input could not be read further (a recording cut short): the output holds
    #: what came before, and run() raises this after keeping it.
    unreadable: str | None = None
    #: Where the time went: network, outputs (post-processing, views, cloud, messages),
    #: write, and the rest (reading and decoding the bag); "total" is the whole run.
    seconds: dict[str, float] = field(default_factory=lambda: dict.fromkeys(
        ("total", "network", "outputs", "write", "read"), 0.0))


@dataclass
class _Frame:
    timestamp: int
    msg: object
    rgb: np.ndarray
    info: object | None
    intrinsics: object | None


def check_input(path: Path) -> None:
    """``path`` is a bag: a folder with metadata.yaml, or a .mcap or .db3 file (so that the
    usual mistakes get their own message). Whether rosbags can read it is for
    ``open_reader`` to find out."""
    if not path.exists():
        raise HydraNetError(f"input bag {path} does not exist")
    if path.is_dir():
        if not (path / "metadata.yaml").is_file():
            raise HydraNetError(f"input bag {path} is not a rosbag2 folder (no metadata.yaml)")
    elif not path.is_file() or path.suffix not in BAG_FILE_SUFFIXES:
        raise HydraNetError(f"input bag {path} is not a rosbag2 bag: neither a folder with "
                            f"metadata.yaml nor a {' or '.join(BAG_FILE_SUFFIXES)} file")


def _check_creatable(path: Path) -> None:
    """A new output can be made where it is asked for: its nearest existing parent is a
    folder this process may write (checked before a model loads, not after)."""
    if path.is_symlink():  # a link to nothing: rosbags would find it "exists already"
        raise HydraNetError(f"cannot create the output bag {path}: it is a symbolic link to "
                            f"{os.readlink(path)}, which does not exist")
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise HydraNetError(f"cannot create the output bag {path}: {parent} is a file, "
                            "not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise HydraNetError(f"cannot create the output bag {path}: {parent} is not writable")


def _first_missing(path: Path) -> Path:
    """The outermost of ``path`` and its parents that does not exist yet: what making
    ``path`` creates, and so what to remove if that fails part way."""
    while not os.path.lexists(path.parent) and path.parent != path:
        path = path.parent
    return path


def check_paths(req: BagRequest) -> None:
    """The input is a bag; the output does not exist and can be made, or is an earlier
    output of this package (it holds ``staging.RECORD``) that may be replaced."""
    check_input(req.input)
    if overlapping(req.input, req.output):
        raise HydraNetError(f"the output bag {req.output} cannot be the input bag {req.input}, "
                            "hold it or lie inside it")
    check_output(req)


def check_output(req: BagRequest) -> None:
    """The output does not exist and can be made, or may be replaced: checked before the
    run and again just before the finished output takes its place."""
    if not req.output.exists():  # a link to nothing as well: _check_creatable says so
        _check_creatable(req.output)
        return
    if not req.output.is_dir():  # an output bag is a folder: a file is the user's own
        raise HydraNetError(f"refusing to replace {req.output}: it is a file, and an output "
                            "bag is a folder, so it is not an earlier output")
    if not req.overwrite:
        raise HydraNetError(f"refusing to overwrite {req.output} (use --overwrite)")
    if read_record(req.output) is None:
        what = "a rosbag2 bag" if (req.output / "metadata.yaml").is_file() else "a folder"
        raise HydraNetError(f"refusing to replace {req.output}: it is {what} without "
                            f"{RECORD}, so not an output of hydranet-bag or hydranet-fleet "
                            "(a recording, say); move it away or choose another output")
    _check_creatable(req.output)


def check_topics(reader, req: BagRequest):
    """The request's topics against the bag: (image connection, camera_info connection or
    None, the camera's namespace). One line naming what is missing or already there."""
    by_topic = {c.topic: c for c in reader.connections}
    image = by_topic.get(req.image_topic)
    if image is None or image.msgtype not in (IMAGE, COMPRESSED):
        found = sorted(c.topic for c in reader.connections if c.msgtype in (IMAGE, COMPRESSED))
        raise HydraNetError(f"{req.input} has no image topic '{req.image_topic}' "
                            f"(image topics: {', '.join(found) or 'none'})")
    namespace = camera_namespace(image.topic, image.msgtype)
    info = by_topic.get(req.info_topic or f"{namespace}/camera_info")
    if req.info_topic and (info is None or info.msgtype != CAMERA_INFO):
        raise HydraNetError(f"{req.input} has no CameraInfo topic '{req.info_topic}'")
    unknown = set(req.outputs) - set(OUTPUT_BY_NAME)
    if unknown:
        raise HydraNetError(f"unknown output(s) {', '.join(sorted(unknown))} (choose from "
                            f"{', '.join(OUTPUT_BY_NAME)})")
    for relative in output_topic_types(set(req.outputs)):
        if f"{namespace}/{relative}" in by_topic:
            raise HydraNetError(f"{req.input} already has a topic {namespace}/{relative}; "
                                "annotate a bag without the node's outputs")
    return image, info, namespace


def selected_frames(reader, image_topic: str, every: int = 1, start_s: float = 0.0,
                    end_s: float | None = None) -> int | None:
    """How many frames every ``every``-th image on ``image_topic`` makes, from the bag's
    metadata, for a progress bar's total; None where a start or end makes it unknowable
    without reading the bag."""
    if start_s > 0 or end_s is not None:
        return None
    images = sum(c.msgcount for c in reader.connections if c.topic == image_topic)
    return -(-images // every)


class BagAnnotator:
    """One run of the bag tool; ``run`` reports progress through ``on_frame``."""

    def __init__(self, request: BagRequest, predictor: Predictor,
                 warn: Callable[[str], None] = print) -> None:
        self.request = request
        self.predictor = predictor
        self.warn = warn
        self.Reader, self.Writer, self.StoragePlugin, self.typestore = _rosbags()
        self.kit = rosbags_kit(self.typestore)
        self.result = BagResult()
        self._pending: list[_Frame] = []
        self._held: list[tuple[int, object, bytes]] = []
        #: A selected image (receive time, bytes, the newest camera_info recorded before it)
        #: waiting for the camera_info a driver sends after it (image_transport's
        #: CameraPublisher does), until the next image comes.
        self._waiting: tuple[int, bytes, object] | None = None
        self._cloud_problem: str | None = None  # the last camera_info problem warned of

    # -- set-up -----------------------------------------------------------------------------

    def _find_topics(self, reader) -> None:
        req = self.request
        self.image_conn, self.info_conn, self.namespace = check_topics(reader, req)
        info_topic = req.info_topic or f"{self.namespace}/camera_info"
        wanted = set(req.outputs)
        if not self.predictor.has_normals:
            wanted -= {"normals", "normals_color"}
        if "points" in wanted and self.info_conn is None:
            self.warn(f"no camera_info topic ({info_topic}) in the bag: no point cloud")
            wanted.discard("points")
        self.wanted = wanted

    def _open_writer(self, reader, path: Path):
        """The output bag, opened at ``path`` (inside the partial folder), with its topics."""
        req = self.request
        storage = req.storage or storage_of(req.input)
        plugin = {"mcap": self.StoragePlugin.MCAP, "sqlite3": self.StoragePlugin.SQLITE3}[storage]
        topics = {topic: cls.__msgtype__ for topic, cls in
                  output_topic_types(self.wanted, self.kit).items()
                  if topic != DEPTH_INFO_TOPIC or self.info_conn is not None}
        from rosbags.rosbag2 import WriterError
        writer = None
        try:
            writer = self.Writer(path, version=BAG_VERSION, storage_plugin=plugin)
            writer.open()
            self._add_connections(reader, writer, topics)
        except (WriterError, OSError) as exc:  # run() removes what was made
            if writer is not None and writer.storage is not None:
                try:
                    writer.close()
                except (WriterError, OSError):
                    pass
            raise HydraNetError(f"cannot create the output bag {req.output}: "
                                f"{one_line(exc)}") from None
        return writer

    def _add_connections(self, reader, writer, topics: dict[str, str]) -> None:
        """The input's connections (copied as recorded), then the outputs' topics."""
        self.copies = {}
        for conn in reader.connections:
            if conn.msgdef.data and conn.digest:
                definition = {"msgdef": conn.msgdef.data, "rihs01": conn.digest}
            else:
                definition = {"typestore": self.typestore}
            self.copies[conn.id] = writer.add_connection(
                conn.topic, conn.msgtype, serialization_format=conn.ext.serialization_format,
                offered_qos_profiles=conn.ext.offered_qos_profiles, **definition)
        self.outputs = {}
        order = [spec.topic for spec in OUTPUTS] + [DEPTH_INFO_TOPIC]
        for relative, msgtype in sorted(topics.items(), key=lambda item: order.index(item[0])):
            topic = f"{self.namespace}/{relative}"
            self.outputs[relative] = (writer.add_connection(topic, msgtype,
                                                            typestore=self.typestore), msgtype)

    # -- the run ----------------------------------------------------------------------------

    def run(self, on_frame: Callable[[int], None] = lambda n: None) -> BagResult:
        """Annotate the bag into a partial folder, then move the output into place (replacing
        an earlier one). Ctrl-C, or an input that cannot be read further, stops it with a valid
        output holding what was done (kept with ``keep_interrupted``; the latter then raised);
        any other failure leaves nothing, and an earlier output as it was."""
        req = self.request
        check_paths(req)
        started = time.perf_counter()
        reader = open_reader(req.input)
        with closing(reader):
            self._find_topics(reader)
            made = _first_missing(req.output)  # the output, or the outermost folder made for it
            partial = partial_folder(req.output)
            try:
                try:
                    req.output.parent.mkdir(parents=True, exist_ok=True)
                except OSError as exc:
                    raise HydraNetError(f"cannot create the output bag {req.output}: "
                                        f"{one_line(exc)}") from None
                remove_partials(req.output.parent, req.output.name)
                self._annotate(reader, partial / req.output.name, on_frame)
                self._check_worth_keeping()
                incomplete = self.result.interrupted or self.result.unreadable
                if incomplete and not req.keep_interrupted:
                    shutil.rmtree(partial, ignore_errors=True)
                else:
                    check_output(req)  # nothing else took the output's place meanwhile
                    publish(partial, req.output, self._record())
            except BaseException:
                shutil.rmtree(partial, ignore_errors=True)
                if made != req.output:  # the folders made for it, those still empty
                    remove_made_folders(req.output.parent, made)
                raise
        seconds = self.result.seconds
        seconds["total"] = time.perf_counter() - started
        seconds["read"] = seconds["total"] - seconds["network"] - seconds["outputs"] - seconds["write"]
        if self.result.unreadable:
            kept = "; the output holds what came before it" if req.keep_interrupted else ""
            raise HydraNetError(self.result.unreadable + kept)
        return self.result

    def _check_worth_keeping(self) -> None:
        """Raise where the output would hold no annotation although frames were selected
        (every one failed), or nothing of the input at all: it must not replace an earlier
        output, nor be taken for a finished one."""
        result = self.result
        if result.frames == 0 and result.skipped and not result.interrupted:
            raise HydraNetError(f"none of the {result.skipped} selected frame(s) could be "
                                f"annotated: {'; '.join(result.skip_reasons)}; no output "
                                "written")
        if result.unreadable and result.messages == 0:
            raise HydraNetError(f"{result.unreadable}; no output written")

    def _record(self) -> dict:
        """What the finished output says of itself (``staging.RECORD``)."""
        req, result = self.request, self.result
        if req.record is not None:
            return req.record
        return {"tool": "hydranet-bag", "input": str(req.input.resolve()),
                "image_topic": req.image_topic, "outputs": sorted(self.wanted),
                "frames": result.frames, "skipped_frames": result.skipped,
                "frames_without_cloud": result.without_cloud,
                "interrupted": result.interrupted, "unreadable": result.unreadable}

    def _annotate(self, reader, path: Path, on_frame: Callable[[int], None]) -> None:
        """Every message copied and the selected frames annotated into the bag at ``path``."""
        req = self.request
        first = reader.start_time + int(req.start_s * 1e9)
        last = reader.start_time + int(req.end_s * 1e9) if req.end_s is not None else None
        writer = self._open_writer(reader, path)
        self._writer = writer
        infos = CameraInfos()
        seen = 0
        position = "the first message"
        writing_failed = False
        try:
            for conn, timestamp, raw in reader.messages():
                position = f"message {self.result.messages + 1} (topic {conn.topic}, " \
                           f"time {timestamp / 1e9:.3f} s)"
                self._copy(self.copies[conn.id], timestamp, raw)
                if self.info_conn is not None and conn.id == self.info_conn.id:
                    if info := self._deserialize(raw, conn.msgtype, conn.topic, timestamp):
                        infos.add(info)
                elif conn.id == self.image_conn.id:
                    self._queue_waiting(infos, on_frame)
                    selected = seen % req.every == 0 and timestamp >= first and (
                        last is None or timestamp <= last)
                    seen += 1
                    if selected:
                        self._waiting = (timestamp, raw, infos.newest)
            self._queue_waiting(infos, on_frame)
            on_frame(self._flush())
        except KeyboardInterrupt:
            self.result.interrupted = True
            self._keep_what_was_read()
        except WriteFailed:
            writing_failed = True
            raise
        except HydraNetError:
            raise
        except Exception as exc:  # noqa: BLE001  a broken storage file raises anything
            self._keep_what_was_read()
            self.result.unreadable = f"{req.input}: cannot read past {position}: " \
                                     f"{type(exc).__name__}: {one_line(exc)}"
        finally:
            self._close(writer, writing_failed)

    def _keep_what_was_read(self) -> None:
        """The run stops early: frames not yet annotated are dropped, and the input's
        messages held back for them are written, so the output is what was read."""
        self._pending.clear()
        self._waiting = None
        self._write_held([])

    def _copy(self, conn, timestamp: int, raw: bytes) -> None:
        self.result.messages += 1
        if self._pending or self._waiting:  # keep the output in time order: wait for the frames
            self._held.append((timestamp, conn, raw))
        else:
            started = time.perf_counter()
            self._write(conn, timestamp, raw)
            self.result.seconds["write"] += time.perf_counter() - started

    def _write(self, conn, timestamp: int, data: bytes) -> None:
        """One message into the output bag; a failure there (a full disk) is the output's,
        not the input's, and says so."""
        try:
            self._writer.write(conn, timestamp, data)
        except Exception as exc:  # noqa: BLE001  storage plugins raise their own errors
            raise WriteFailed(f"cannot write the output bag {self.request.output} (at "
                              f"{timestamp / 1e9:.3f} s, topic {conn.topic}): "
                              f"{one_line(exc)}") from None

    def _close(self, writer, writing_failed: bool) -> None:
        """Close the output bag; after a write failure closing may fail as well, and the
        first failure is the one reported."""
        try:
            writer.close()
        except Exception as exc:  # noqa: BLE001
            if not writing_failed:
                raise HydraNetError(f"cannot finish the output bag {self.request.output}: "
                                    f"{one_line(exc)}") from None

    def _deserialize(self, raw: bytes, msgtype: str, topic: str, timestamp: int):
        try:
            return self.typestore.deserialize_cdr(raw, msgtype)
        except Exception as exc:  # noqa: BLE001
            self.warn(f"skipping an unreadable {msgtype} on {topic} at {timestamp / 1e9:.3f} s: "
                      f"{type(exc).__name__}: {exc}")
            return None

    def _queue_waiting(self, infos: CameraInfos, on_frame: Callable[[int], None]) -> None:
        """The image waiting for its camera_info joins the frames to annotate, now that the
        next image (or the bag's end) is reached: a full batch is annotated, and what waited
        is written where the image was skipped and no frame is pending."""
        if self._waiting is None:
            return
        (timestamp, raw, newest), self._waiting = self._waiting, None
        self._add_frame(timestamp, raw, infos, newest)
        if len(self._pending) >= self.request.batch or not self._pending:
            on_frame(self._flush())

    def _add_frame(self, timestamp: int, raw: bytes, infos: CameraInfos, newest) -> None:
        """Decode an image and queue it with its camera_info (the one stamped as it, read before
        the next image, else ``newest``, the latest recorded before the image: never one of
        a later frame) and intrinsics; one that cannot be decoded is skipped with a warning."""
        conn = self.image_conn
        msg = self._deserialize(raw, conn.msgtype, conn.topic, timestamp)
        try:
            if msg is None:
                raise ImageError("data", "not a valid message")
            rgb = compressed_to_rgb(msg) if conn.msgtype == COMPRESSED else image_to_rgb(msg)
        except ImageError as exc:
            self._skip(1, timestamp, f"skipping the frame on {conn.topic} at", str(exc))
            return
        intrinsics = None
        info = infos.stamped(msg.header) or newest
        if info is None and self.info_conn is not None and self.wanted & {"points", "depth"}:
            self._without_cloud(timestamp, f"no camera_info on {self.info_conn.topic} before "
                                           "the image or stamped as it")
        if info is not None and self.wanted & {"points", "depth"}:
            try:
                intrinsics = camera_intrinsics(info, rgb.shape[1], rgb.shape[0])
            except ImageError as exc:  # the frame's other outputs need no camera_info
                self._without_cloud(timestamp, str(exc))
                info = None
        self._pending.append(_Frame(timestamp, msg, rgb, info, intrinsics))

    def _skip(self, frames: int, timestamp: int, what: str, reason: str) -> None:
        """Counts frames skipped for ``reason``; warns the first time of each reason only (a
        bag of an unsupported encoding would otherwise warn once per frame)."""
        self.result.skipped += frames
        count = self.result.skip_reasons.get(reason, 0)
        self.result.skip_reasons[reason] = count + frames
        if count == 0:
            self.warn(f"{what} {timestamp / 1e9:.3f} s: {reason}"
                      " (frames skipped for the same reason later are only counted)")

    def _without_cloud(self, timestamp: int, reason: str) -> None:
        """Counts a frame annotated without the point cloud and depth/camera_info; warns on
        the first such frame and whenever the reason changes, not on every frame."""
        self.result.without_cloud += 1
        if reason != self._cloud_problem:
            self._cloud_problem = reason
            self.warn(f"from {timestamp / 1e9:.3f} s on, frames annotated without the point "
                      f"cloud and depth/camera_info: {reason}")

    def _flush(self) -> int:
        """Run the pending frames as one batch and write their outputs (and what waited)."""
        frames, self._pending = self._pending, []
        written: list[tuple[int, object, bytes]] = []
        try:
            if frames:
                written = self._outputs_of(frames)
                self.result.frames += len(frames)
        except Exception as exc:  # noqa: BLE001  as the node: skip the frames, go on
            self._skip(len(frames), frames[0].timestamp,
                       f"annotating {len(frames)} frame(s) failed, skipped, from",
                       f"{type(exc).__name__}: {one_line(exc)}")
        self._write_held(written)
        return len(frames)

    def _outputs_of(self, frames: list[_Frame]) -> list[tuple[int, object, bytes]]:
        """The serialised output messages of a batch of frames, with their timestamps."""
        width, height = self.request.inference_size
        sizes = [inference_size(f.rgb.shape[:2], width, height) for f in frames]
        started = time.perf_counter()
        results, network_s = self.predictor.outputs_many(
            [f.rgb for f in frames], sizes, [self.wanted] * len(frames), self.request.settings,
            [f.intrinsics for f in frames])
        network_done = started + network_s
        self.result.seconds["network"] += network_s
        written: list[tuple[int, object, bytes]] = []
        for frame, arrays in zip(frames, results):
            messages = frame_messages(arrays, frame.msg.header, frame.info, self.kit)
            for relative, msg in messages.items():
                conn, msgtype = self.outputs[relative]
                written.append((frame.timestamp, conn,
                                bytes(self.typestore.serialize_cdr(msg, msgtype))))
                self.result.added[conn.topic] = self.result.added.get(conn.topic, 0) + 1
        self.result.seconds["outputs"] += time.perf_counter() - network_done
        return written

    def _write_held(self, outputs: list[tuple[int, object, bytes]]) -> None:
        """The copies that waited and the new outputs, merged in time order (a frame's
        outputs after the messages recorded at the same time)."""
        items = sorted([(t, 0, i, c, d) for i, (t, c, d) in enumerate(self._held)]
                       + [(t, 1, i, c, d) for i, (t, c, d) in enumerate(outputs)],
                       key=lambda item: item[:3])
        self._held = []
        started = time.perf_counter()
        for timestamp, _, _, conn, data in items:
            self._write(conn, timestamp, data)
        self.result.seconds["write"] += time.perf_counter() - started
