"""hydranet-bag: annotate small MCAP and sqlite3 bags, read the results back, compare them
with what the live node publishes for the same frames, and interrupt a run."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import import_or_skip, make_model

rosbags = import_or_skip("rosbags", "hydranet-bag needs rosbags (pip install -e .[bag])")
from rosbags.rosbag2 import Reader, StoragePlugin, Writer  # noqa: E402
from rosbags.typesys import Stores, get_typestore  # noqa: E402

from hydranet_ros.checkpoint import save_checkpoint  # noqa: E402
from hydranet_ros.cli import bag as bag_cli  # noqa: E402
from hydranet_ros.errors import HydraNetError  # noqa: E402
from hydranet_ros.evaluation import held_out_frame  # noqa: E402
from hydranet_ros.outputs import metric_depth  # noqa: E402
from hydranet_ros.predictor import Predictor  # noqa: E402
from hydranet_ros.staging import PARTIAL, RECORD, read_record  # noqa: E402
from hydranet_ros.synthetic.render import SyntheticWorld  # noqa: E402

TS = get_typestore(Stores.ROS2_KILTED)
Image = TS.types["sensor_msgs/msg/Image"]
CameraInfo = TS.types["sensor_msgs/msg/CameraInfo"]
Header = TS.types["std_msgs/msg/Header"]
Time = TS.types["builtin_interfaces/msg/Time"]
String = TS.types["std_msgs/msg/String"]
RegionOfInterest = TS.types["sensor_msgs/msg/RegionOfInterest"]
WIDTH, HEIGHT = 128, 96
ENGINE = ["--device", "cpu", "--backend", "torch", "--precision", "fp32"]
BAG_EXE = str(Path(sys.executable).with_name("hydranet-bag"))
ADDED = ["/cam/segmentation/labels", "/cam/depth/image", "/cam/normals/image", "/cam/points",
         "/cam/depth/camera_info"]


def header(k: int):
    return Header(stamp=Time(sec=100 + k, nanosec=5000 + k), frame_id="camera_optical_frame")


def camera_info_msg(k: int, width: int = WIDTH, height: int = HEIGHT):
    f = 0.8 * width
    return CameraInfo(header=header(k), height=height, width=width, distortion_model="plumb_bob",
                      d=np.zeros(5), k=np.array([f, 0, width / 2, 0, f, height / 2, 0, 0, 1.0]),
                      r=np.eye(3).ravel(), p=np.array([f, 0, width / 2, 0, 0, f, height / 2, 0,
                                                       0, 0, 1.0, 0]),
                      binning_x=0, binning_y=0,
                      roi=RegionOfInterest(x_offset=0, y_offset=0, height=0, width=0,
                                           do_rectify=False))


def frames(count: int, width: int = WIDTH, height: int = HEIGHT) -> list[np.ndarray]:
    world = SyntheticWorld(width, height)
    return [held_out_frame(world, k).rgb for k in range(count)]


def write_bag(path: Path, storage: str, pictures: list[np.ndarray], broken: int | None = None,
              uncalibrated_from: int | None = None, calibrated_from: int = 0,
              depth_camera: bool = False):
    """/cam/image_raw (bgr8), /cam/camera_info and /chatter, 0.1 s apart; frame ``broken``
    gets a data size that does not match its step; from frame ``uncalibrated_from`` on,
    the camera_info has K and P zero, as an uncalibrated camera's; before frame
    ``calibrated_from`` there is none; with ``depth_camera`` the images are 16UC1 (a depth
    camera's, which the tool does not annotate)."""
    plugin = {"mcap": StoragePlugin.MCAP, "sqlite3": StoragePlugin.SQLITE3}[storage]
    height, width = pictures[0].shape[:2]
    with Writer(path, version=8, storage_plugin=plugin) as writer:
        image = writer.add_connection("/cam/image_raw", Image.__msgtype__, typestore=TS)
        info = writer.add_connection("/cam/camera_info", CameraInfo.__msgtype__, typestore=TS)
        chatter = writer.add_connection("/chatter", String.__msgtype__, typestore=TS)
        for k, rgb in enumerate(pictures):
            t = 1_000_000_000 + k * 100_000_000
            data = np.ascontiguousarray(rgb[:, :, ::-1]).reshape(-1)
            if k == broken:
                data = data[:-10]
            info_msg = camera_info_msg(k, width, height)
            if uncalibrated_from is not None and k >= uncalibrated_from:
                info_msg.k[:], info_msg.p[:] = 0.0, 0.0
            if k >= calibrated_from:
                writer.write(info, t, TS.serialize_cdr(info_msg, CameraInfo.__msgtype__))
            encoding, step = ("16UC1", width * 2) if depth_camera else ("bgr8", width * 3)
            writer.write(image, t + 1000, TS.serialize_cdr(Image(
                header=header(k), height=height, width=width, encoding=encoding,
                is_bigendian=0, step=step, data=data[:step * height]), Image.__msgtype__))
            writer.write(chatter, t + 2000, TS.serialize_cdr(String(data=f"hello {k}"),
                                                             String.__msgtype__))


def read_bag(path: Path) -> dict[str, list[tuple[int, bytes, str]]]:
    found: dict[str, list] = {}
    with Reader(path) as reader:
        for conn, t, raw in reader.messages():
            found.setdefault(conn.topic, []).append((t, bytes(raw), conn.msgtype))
    return found


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    path = tmp_path_factory.mktemp("bagw") / "w.ckpt"
    save_checkpoint(make_model(6, 3, seed=21), path)
    return path


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_bag_is_annotated(tmp_path, checkpoint, storage):
    pictures = frames(4)
    source, result = tmp_path / "in", tmp_path / "out"
    write_bag(source, storage, pictures, broken=2)
    code = bag_cli.main([str(source), str(result), "--image-topic", "/cam/image_raw",
                         "--weights", str(checkpoint), *ENGINE])
    assert code == 0
    found = read_bag(result)
    original = read_bag(source)
    for topic, messages in original.items():  # every input message, unchanged
        assert found[topic] == messages
    assert sorted(found) == sorted(list(original) + ADDED)
    predictor = Predictor.from_weights(str(checkpoint), device="cpu", backend="torch",
                                       precision="fp32", log=lambda _: None)
    image_times = [t for t, _, _ in original["/cam/image_raw"]]
    kept = [0, 1, 3]  # frame 2 is broken: skipped, the rest go on
    for topic in ADDED:
        assert [t for t, _, _ in found[topic]] == [image_times[k] for k in kept], topic
    for n, k in enumerate(kept):
        labels = TS.deserialize_cdr(found["/cam/segmentation/labels"][n][1], Image.__msgtype__)
        depth = TS.deserialize_cdr(found["/cam/depth/image"][n][1], Image.__msgtype__)
        normals = TS.deserialize_cdr(found["/cam/normals/image"][n][1], Image.__msgtype__)
        for msg, encoding in ((labels, "mono8"), (depth, "32FC1"), (normals, "32FC3")):
            assert msg.header.stamp.sec == 100 + k and msg.header.stamp.nanosec == 5000 + k
            assert msg.header.frame_id == "camera_optical_frame" and msg.encoding == encoding
            assert (msg.width, msg.height) == (WIDTH, HEIGHT)
        expected = predictor.predict(pictures[k])
        assert np.array_equal(labels.data.reshape(HEIGHT, WIDTH), expected.labels)
        assert np.array_equal(depth.data.view(np.float32).reshape(HEIGHT, WIDTH),
                              metric_depth(expected.depth, 80.0), equal_nan=True)
        cloud = TS.deserialize_cdr(found["/cam/points"][n][1], "sensor_msgs/msg/PointCloud2")
        assert (cloud.height, cloud.width, cloud.point_step) == (HEIGHT, WIDTH, 20)
    with pytest.raises(HydraNetError, match="refusing to overwrite"):
        bag_cli.main([str(source), str(result), "--image-topic", "/cam/image_raw",
                      "--weights", str(checkpoint), *ENGINE])


def test_uncalibrated_frames_lose_only_the_cloud(tmp_path, checkpoint, capsys):
    """Frames whose camera_info cannot describe them are annotated without the point cloud
    and depth/camera_info, said once (not per frame) and counted in the summary."""
    source, result = tmp_path / "in", tmp_path / "out"
    write_bag(source, "mcap", frames(4), uncalibrated_from=1)
    assert bag_cli.main([str(source), str(result), "--image-topic", "/cam/image_raw",
                         "--weights", str(checkpoint), *ENGINE]) == 0
    found = read_bag(result)
    image_times = [t for t, _, _ in found["/cam/image_raw"]]
    for topic in ("/cam/segmentation/labels", "/cam/depth/image", "/cam/normals/image"):
        assert [t for t, _, _ in found[topic]] == image_times, topic
    for topic in ("/cam/points", "/cam/depth/camera_info"):
        assert [t for t, _, _ in found[topic]] == image_times[:1], topic
    err = capsys.readouterr().err
    warned = [line for line in err.splitlines() if "without the point cloud" in line]
    assert len(warned) == 1 and "camera matrix K has unusable focal lengths" in warned[0], err
    assert "4 frame(s) annotated (0 skipped, 3 without point cloud)" in err


def test_frames_before_the_first_camera_info_are_counted(tmp_path, checkpoint, capsys):
    """Frames with no camera_info stamped as them or recorded before them are annotated
    without the cloud and counted; none takes the calibration of a later frame."""
    source, result = tmp_path / "in", tmp_path / "out"
    write_bag(source, "mcap", frames(4), calibrated_from=2)
    assert bag_cli.main([str(source), str(result), "--image-topic", "/cam/image_raw",
                         "--weights", str(checkpoint), *ENGINE]) == 0
    found = read_bag(result)
    image_times = [t for t, _, _ in found["/cam/image_raw"]]
    assert [t for t, _, _ in found["/cam/points"]] == image_times[2:]
    err = capsys.readouterr().err
    assert "4 frame(s) annotated (0 skipped, 2 without point cloud)" in err, err
    assert "/cam/points (2)" in err and "/cam/segmentation/labels (4)" in err, err


def test_frames_that_cannot_be_annotated_are_said_once_and_fail_the_run(tmp_path, checkpoint,
                                                                         capsys):
    """A bag of an encoding the tool cannot read: one warning (not one per frame), and the
    run fails with the reason instead of reporting success with empty topics; no output is
    written, and an earlier one it was to replace stays."""
    source, depth_bag, result = tmp_path / "in", tmp_path / "depth", tmp_path / "out"
    write_bag(source, "mcap", frames(2))
    write_bag(depth_bag, "mcap", frames(5), depth_camera=True)
    run = ["--image-topic", "/cam/image_raw", "--weights", str(checkpoint), *ENGINE]
    assert bag_cli.run_main(bag_cli.main, [str(depth_bag), str(result), *run], "x") == 1
    err = capsys.readouterr().err
    warned = [line for line in err.splitlines() if "skipping the frame" in line]
    assert len(warned) == 1 and "'16UC1' is not supported" in warned[0], err
    assert "x: error: none of the 5 selected frame(s) could be annotated: encoding: '16UC1'" \
        in err and "no output written" in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["depth", "in"]
    assert bag_cli.main([str(source), str(result), *run]) == 0
    earlier = read_bag(result)
    assert bag_cli.run_main(bag_cli.main, [str(depth_bag), str(result), *run, "--overwrite"],
                            "x") == 1
    assert read_bag(result) == earlier


def test_a_wrong_topic_is_found_before_the_model_loads_and_keeps_the_output(tmp_path,
                                                                              checkpoint):
    """A typo in --image-topic with --overwrite: one line before the model loads, and the
    earlier output is still there (it was removed before the topic was checked)."""
    source, result = tmp_path / "in", tmp_path / "out"
    write_bag(source, "mcap", frames(1))
    assert bag_cli.main([str(source), str(result), "--image-topic", "/cam/image_raw",
                         "--weights", str(checkpoint), *ENGINE]) == 0
    earlier = read_bag(result)
    done = subprocess.run([BAG_EXE, str(source), str(result), "--image-topic", "/cam/image_rect",
                           "--weights", str(checkpoint), *ENGINE, "--overwrite"],
                          capture_output=True, text=True, timeout=300)
    assert "has no image topic '/cam/image_rect' (image topics: /cam/image_raw)" in \
        one_error_line(done)
    assert "inference backend" not in done.stderr and read_bag(result) == earlier


@pytest.mark.parametrize("order", ["infos first", "each after its image"])
def test_each_frame_takes_the_camera_info_stamped_as_it(tmp_path, checkpoint, order):
    """Each image takes the camera_info with its own stamp, for its depth/camera_info and
    its point cloud: not the newest where they all come first (a driver that re-calibrates,
    a bag merged from two recordings), and not the previous frame's (nor none, for the
    first) where each comes after its image, as image_transport's CameraPublisher sends."""
    pictures = frames(3)
    source, result = tmp_path / "in", tmp_path / "out"
    infos = [camera_info_msg(k) for k in range(len(pictures))]
    for k, info in enumerate(infos):  # a focal length of its own per frame
        info.k[0] = info.k[4] = info.p[0] = info.p[5] = 60.0 + 20.0 * k
    with Writer(source, version=8, storage_plugin=StoragePlugin.MCAP) as writer:
        image = writer.add_connection("/cam/image_raw", Image.__msgtype__, typestore=TS)
        info_conn = writer.add_connection("/cam/camera_info", CameraInfo.__msgtype__,
                                          typestore=TS)
        for k, (info, rgb) in enumerate(zip(infos, pictures)):
            t = 2_000_000_000 + k * 100_000_000
            info_time = 1_000_000_000 + k if order == "infos first" else t + 1000
            writer.write(info_conn, info_time, TS.serialize_cdr(info, info.__msgtype__))
            writer.write(image, t, TS.serialize_cdr(Image(
                header=header(k), height=HEIGHT, width=WIDTH, encoding="rgb8", is_bigendian=0,
                step=WIDTH * 3, data=rgb.reshape(-1)), Image.__msgtype__))
    assert bag_cli.main([str(source), str(result), "--image-topic", "/cam/image_raw",
                         "--weights", str(checkpoint), *ENGINE]) == 0
    found = read_bag(result)
    assert len(found["/cam/points"]) == len(pictures)
    u = np.arange(WIDTH)[None, :] - WIDTH / 2
    for k, ((_, info_raw, _), (_, depth_raw, _), (_, cloud_raw, _)) in enumerate(zip(
            found["/cam/depth/camera_info"], found["/cam/depth/image"], found["/cam/points"])):
        info = TS.deserialize_cdr(info_raw, CameraInfo.__msgtype__)
        assert list(info.k) == list(infos[k].k), k
        depth = TS.deserialize_cdr(depth_raw, Image.__msgtype__).data.view(np.float32)
        depth = depth.reshape(HEIGHT, WIDTH)
        cloud = TS.deserialize_cdr(cloud_raw, "sensor_msgs/msg/PointCloud2")
        x = cloud.data.view(np.float32).reshape(HEIGHT, WIDTH, 5)[:, :, 0]
        valid = np.isfinite(depth)
        assert valid.mean() > 0.5
        assert np.allclose(x[valid], (u * depth / infos[k].p[0])[valid], rtol=1e-5), k


def test_nothing_the_user_keeps_is_replaced(tmp_path, checkpoint):
    """--overwrite replaces an earlier output bag only (it holds the tool's record): never
    the input bag's own folder, a folder inside it, a folder that is not a bag, or another
    recording (which a rosbag2 folder alone would not tell apart); and a bag that cannot be
    annotated leaves no output behind."""
    source = tmp_path / "recordings" / "in"
    write_bag(source, "mcap", frames(2))
    run = [str(source), "--image-topic", "/cam/image_raw", "--weights", str(checkpoint),
           *ENGINE, "--overwrite"]
    for output in (source.parent, source / "out"):
        with pytest.raises(HydraNetError, match="cannot be the input bag .*, hold it or lie "
                                                "inside it"):
            bag_cli.main([run[0], str(output), *run[1:]])
    notes, recording = tmp_path / "notes", tmp_path / "recording2"
    notes.mkdir()
    (notes / "todo.txt").write_text("keep me")
    write_bag(recording, "mcap", frames(1))
    kept = read_bag(recording)
    for folder, what in ((notes, "a folder"), (recording, "a rosbag2 bag")):
        with pytest.raises(HydraNetError, match=f"it is {what} without {RECORD}, so not an "
                                                "output of hydranet-bag"):
            bag_cli.main([run[0], str(folder), *run[1:]])
    assert (notes / "todo.txt").read_text() == "keep me" and read_bag(recording) == kept
    annotated, again = tmp_path / "annotated", tmp_path / "again"
    assert bag_cli.main([run[0], str(annotated), *run[1:]]) == 0
    with pytest.raises(HydraNetError, match="already has a topic /cam/segmentation/labels"):
        bag_cli.main([str(annotated), str(again), *run[1:]])
    assert not again.exists()


def test_confidence_on_request(tmp_path, checkpoint):
    pictures = frames(2)
    source, result = tmp_path / "in", tmp_path / "out"
    write_bag(source, "mcap", pictures)
    assert bag_cli.main([str(source), str(result), "--image-topic", "/cam/image_raw",
                         "--weights", str(checkpoint), "--outputs", "labels,confidence",
                         *ENGINE]) == 0
    found = read_bag(result)
    assert "/cam/segmentation/confidence" in found and "/cam/depth/image" not in found
    predictor = Predictor.from_weights(str(checkpoint), device="cpu", backend="torch",
                                       precision="fp32", log=lambda _: None)
    for k, (_, raw, _) in enumerate(found["/cam/segmentation/confidence"]):
        msg = TS.deserialize_cdr(raw, Image.__msgtype__)
        assert msg.encoding == "mono8" and msg.header.stamp.sec == 100 + k
        expected = predictor.predict(pictures[k], parts={"labels", "confidence"}).confidence
        assert np.array_equal(msg.data.reshape(HEIGHT, WIDTH), expected)


def test_refusals_are_one_line(tmp_path, checkpoint, capsys):
    source = tmp_path / "in"
    write_bag(source, "mcap", frames(1))
    (tmp_path / "exists").mkdir()
    run = [str(source), str(tmp_path / "exists"), "--weights", str(checkpoint), *ENGINE]
    assert bag_cli.run_main(bag_cli.main, run + ["--image-topic", "/cam/image_raw"],
                            prog="hydranet-bag") == 1
    assert "refusing to overwrite" in capsys.readouterr().err
    run[1] = str(tmp_path / "new")
    assert bag_cli.run_main(bag_cli.main, run + ["--image-topic", "/nope"], prog="x") == 1
    assert "has no image topic '/nope' (image topics: /cam/image_raw)" in capsys.readouterr().err
    broken = tmp_path / "broken.mcap"
    data = next(source.glob("*.mcap")).read_bytes()
    broken.write_bytes(data[: len(data) // 2])
    run[0], run[1] = str(broken), str(tmp_path / "new2")
    assert bag_cli.run_main(bag_cli.main, run + ["--image-topic", "/cam/image_raw"],
                            prog="x") == 1
    assert "x: error:" in capsys.readouterr().err


def test_every_start_and_end_select_frames(tmp_path, checkpoint):
    source, result = tmp_path / "in", tmp_path / "out"
    write_bag(source, "sqlite3", frames(8))
    assert bag_cli.main([str(source), str(result), "--image-topic", "/cam/image_raw",
                         "--weights", str(checkpoint), *ENGINE, "--every", "2", "--start",
                         "0.15", "--end", "0.65", "--outputs", "labels"]) == 0
    found = read_bag(result)
    assert sorted(found) == ["/cam/camera_info", "/cam/image_raw", "/cam/segmentation/labels",
                             "/chatter"]
    stamps = [TS.deserialize_cdr(raw, Image.__msgtype__).header.stamp.sec - 100
              for _, raw, _ in found["/cam/segmentation/labels"]]
    assert stamps == [2, 4, 6]  # even frames between 0.15 s and 0.65 s


def start_and_stop(source: Path, result: Path, checkpoint, log: Path, sig: int | None,
                   frames_first: int = 2, *args: str) -> int:
    """hydranet-bag started in a process of its own and sent ``sig`` once ``frames_first``
    frames are annotated (run to the end with None); its exit status."""
    with open(log, "w") as err:
        proc = subprocess.Popen([BAG_EXE, str(source), str(result), "--image-topic",
                                 "/cam/image_raw", "--weights", str(checkpoint), "--device",
                                 "cpu", "--backend", "reference", *args], stderr=err,
                                env={**os.environ, "PYTHONUNBUFFERED": "1"},
                                # as from a terminal, even where this runs in the background
                                # (which ignores SIGINT, and Python then keeps ignoring it)
                                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        deadline = time.monotonic() + 120
        while sig is not None and time.monotonic() < deadline:
            done = [int(n) for n in re.findall(r"(\d+)/\d+ \[", log.read_text())]
            if done and max(done) >= frames_first:
                proc.send_signal(sig)
                break
            time.sleep(0.1)
        return proc.wait(120)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_interrupted_run_leaves_a_readable_bag(tmp_path, checkpoint, sig):
    """Ctrl-C, or SIGTERM (``timeout``, ``docker stop``, which ended the process on the spot
    and left a bag without metadata), stops the run with a valid output holding what was
    done, and its record says it was interrupted."""
    source, result = tmp_path / "in", tmp_path / "out"
    count = 40
    write_bag(source, "mcap", frames(count, 320, 240))
    log = tmp_path / "stderr.txt"
    code = start_and_stop(source, result, checkpoint, log, sig)
    assert code == 130, log.read_text()
    assert "interrupted:" in log.read_text()
    found = read_bag(result)
    annotated = len(found["/cam/segmentation/labels"])
    assert 2 <= annotated < count
    assert len(found["/cam/image_raw"]) >= annotated
    last_output = found["/cam/segmentation/labels"][-1][0]
    assert all(t <= last_output + 1 for t, _, _ in found["/cam/image_raw"][:annotated])
    record = read_record(result)
    assert record["interrupted"] is True and record["frames"] == annotated, record


def test_a_killed_run_leaves_the_earlier_output_and_nothing_else(tmp_path, checkpoint):
    """SIGKILL (out of memory, a power cut) mid-run: the earlier output it was replacing is
    as it was, nothing half-written lies under the output's name, and the next run removes
    what the killed one left."""
    source, result = tmp_path / "in", tmp_path / "out"
    write_bag(source, "mcap", frames(40, 320, 240))
    log = tmp_path / "stderr.txt"
    assert start_and_stop(source, result, checkpoint, log, None, 0, "--every", "20") == 0, \
        log.read_text()
    earlier = read_bag(result)
    assert len(earlier["/cam/segmentation/labels"]) == 2
    code = start_and_stop(source, result, checkpoint, log, signal.SIGKILL, 2, "--overwrite")
    assert code == -signal.SIGKILL, log.read_text()
    assert read_bag(result) == earlier
    assert [p for p in tmp_path.iterdir() if PARTIAL in p.name]  # what the killed run left
    assert bag_cli.main([str(source), str(result), "--image-topic", "/cam/image_raw",
                         "--weights", str(checkpoint), *ENGINE, "--every", "10",
                         "--overwrite"]) == 0
    assert len(read_bag(result)["/cam/segmentation/labels"]) == 4
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in", "out", "stderr.txt"]


def test_bag_outputs_are_the_live_nodes_messages(ros, tmp_path, checkpoint):
    """The same frames through a running hydranet_node: every recorded output, read with
    rclpy's own deserialisation, equals the live message field for field (CDR padding
    bytes are unspecified, so bytes are not compared)."""
    from rclpy.serialization import deserialize_message
    from sensor_msgs.msg import CameraInfo as RosCameraInfo
    from sensor_msgs.msg import Image as RosImage

    from ros_harness import NodeProcess, Probe
    source, result = tmp_path / "in", tmp_path / "out"
    write_bag(source, "mcap", frames(2))
    assert bag_cli.main([str(source), str(result), "--image-topic", "/cam/image_raw",
                         "--weights", str(checkpoint), *ENGINE]) == 0
    recorded = read_bag(result)
    proc = NodeProcess(tmp_path / "node.log", {"weights": str(checkpoint), "device": "cpu",
                                               "backend": "torch", "precision": "fp32"},
                       namespace="/cam")
    probe = Probe("bag_probe", namespace="/cam")
    relative = [topic[len("/cam/"):] for topic in ADDED]
    try:
        assert probe.wait_connected(probe.image_pub), proc.log()
        for k in range(2):
            image = deserialize_message(recorded["/cam/image_raw"][k][1], RosImage)
            info = deserialize_message(recorded["/cam/camera_info"][k][1], RosCameraInfo)
            live: dict = {}
            for _ in range(10):  # resend while discovery settles
                probe.info_pub.publish(info)
                time.sleep(0.05)
                probe.image_pub.publish(image)
                live = probe.wait_outputs(image.header.stamp, relative, timeout=3)
                if len(live) == len(relative):
                    break
            assert len(live) == len(relative), proc.log()
            for topic, name in zip(ADDED, relative):
                assert deserialize_message(recorded[topic][k][1], type(live[name])) == live[name]
    finally:
        probe.destroy()
        proc.stop()


def test_an_engine_error_skips_those_frames_only(tmp_path, checkpoint, monkeypatch):
    source, result = tmp_path / "in", tmp_path / "out"
    write_bag(source, "mcap", frames(3))
    calls = []
    original = Predictor.predict_many

    def flaky(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("injected engine fault")
        return original(self, *args, **kwargs)
    monkeypatch.setattr(Predictor, "predict_many", flaky)
    assert bag_cli.main([str(source), str(result), "--image-topic", "/cam/image_raw",
                         "--weights", str(checkpoint), *ENGINE, "--outputs", "labels"]) == 0
    stamps = [TS.deserialize_cdr(raw, Image.__msgtype__).header.stamp.sec - 100
              for _, raw, _ in read_bag(result)["/cam/segmentation/labels"]]
    assert stamps == [0, 2]


def one_error_line(done: subprocess.CompletedProcess, prog: str = "hydranet-bag") -> str:
    """The command failed with exit 1 and one ``prog: error:`` line, and no traceback."""
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    lines = [line for line in done.stderr.splitlines() if "error:" in line]
    assert len(lines) == 1 and f"{prog}: error: " in lines[0], done.stderr
    return lines[0]


def run_bag(source: Path, output: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([BAG_EXE, str(source), str(output), "--image-topic", "/cam/image_raw",
                           "--weights", "synthetic", *ENGINE, *extra], capture_output=True,
                          text=True, timeout=300)


def test_an_input_that_is_not_a_bag_is_one_line(tmp_path):
    """A folder that is not a bag, a file that is not one, a corrupt bag (whose YAML error
    spans lines) and a missing path: one line naming the input and what is wrong, before
    the model loads, and no output."""
    (tmp_path / "photos").mkdir()
    (tmp_path / "notes.txt").write_text("not a bag")
    (tmp_path / "garbage.mcap").write_bytes(b"not an mcap file" * 10)
    write_bag(tmp_path / "bad_yaml", "mcap", frames(1))
    (tmp_path / "bad_yaml" / "metadata.yaml").write_text("rosbag2_bagfile_information: [\n")
    for name, expected in (("photos", "is not a rosbag2 folder (no metadata.yaml)"),
                           ("notes.txt", "is not a rosbag2 bag: neither a folder with "
                                         "metadata.yaml nor a .mcap or .db3 file"),
                           ("garbage.mcap", "is not a readable rosbag2: ReaderError"),
                           ("bad_yaml", "is not a readable rosbag2: ReaderError: Could not "
                                        "load YAML"),
                           ("missing", "does not exist")):
        done = run_bag(tmp_path / name, tmp_path / "out")
        line = one_error_line(done)
        assert f"{tmp_path / name} " in line and expected in line, line
        assert "inference backend" not in done.stderr, done.stderr  # the model never loaded
        assert not (tmp_path / "out").exists()


def test_an_output_that_cannot_be_made_is_one_line(tmp_path):
    """An output under a regular file, or a symbolic link to nothing: one line, before the
    model loads, and nothing made; a file where the output should go is not replaced, not
    even with --overwrite (an output bag is a folder, so the file is the user's own)."""
    source = tmp_path / "in"
    write_bag(source, "mcap", frames(1))
    (tmp_path / "a_file").write_text("keep me")
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere" / "out")
    for output, expected in ((tmp_path / "a_file" / "sub" / "out",
                              f"cannot create the output bag {tmp_path / 'a_file' / 'sub' / 'out'}"
                              f": {tmp_path / 'a_file'} is a file, not a folder"),
                             (tmp_path / "dangling", "cannot create the output bag "
                              f"{tmp_path / 'dangling'}: it is a symbolic link to")):
        done = run_bag(source, output)
        assert expected in one_error_line(done)
        assert "inference backend" not in done.stderr, done.stderr
    assert not (tmp_path / "nowhere").exists() and (tmp_path / "a_file").read_text() == "keep me"
    done = run_bag(source, tmp_path / "a_file", "--overwrite")
    assert "refusing to replace" in one_error_line(done) and "it is a file" in done.stderr
    assert (tmp_path / "a_file").read_text() == "keep me"


def test_an_output_that_fails_part_way_leaves_nothing(tmp_path, checkpoint, monkeypatch,
                                                      capsys):
    """rosbags refusing the output's connections (its WriterError) once the folder is made:
    one line, and the half-made folder (with the folders made for it) is removed."""
    from rosbags.rosbag2 import WriterError
    source = tmp_path / "in"
    write_bag(source, "mcap", frames(1))

    def refuse(self, *args, **kwargs):
        raise WriterError("Connection can only be added once.")
    monkeypatch.setattr(Writer, "add_connection", refuse)
    output = tmp_path / "new" / "out"
    assert bag_cli.run_main(bag_cli.main, [str(source), str(output), "--image-topic",
                                           "/cam/image_raw", "--weights", str(checkpoint),
                                           *ENGINE], prog="hydranet-bag") == 1
    err = capsys.readouterr().err
    assert f"hydranet-bag: error: cannot create the output bag {output}: Connection can " \
           "only be added once." in err
    assert not (tmp_path / "new").exists()


def test_a_write_failure_part_way_names_the_output(tmp_path, checkpoint, monkeypatch, capsys):
    """A full disk while writing: one line about the output bag, not about reading the input;
    nothing more is written after it."""
    source, output = tmp_path / "in", tmp_path / "out"
    write_bag(source, "mcap", frames(3))
    real_write, calls = Writer.write, []

    def fill_up(self, connection, timestamp, data):
        calls.append(connection.topic)
        if len(calls) == 5:
            raise OSError(28, "No space left on device")
        return real_write(self, connection, timestamp, data)
    monkeypatch.setattr(Writer, "write", fill_up)
    assert bag_cli.run_main(bag_cli.main, [str(source), str(output), "--image-topic",
                                           "/cam/image_raw", "--weights", str(checkpoint),
                                           *ENGINE], prog="hydranet-bag") == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(calls) == 5, calls
    assert err[-1].startswith(f"hydranet-bag: error: cannot write the output bag {output} (at "), \
        err
    assert "No space left on device" in err[-1] and "cannot read" not in err[-1], err
