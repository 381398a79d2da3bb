"""The queue of one, frame statistics and health levels, output selection and settings."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from hydranet_ros import outputs as outputs_module
from hydranet_ros.errors import HydraNetError
from hydranet_ros.geometry import Intrinsics
from hydranet_ros.latest import LatestSlots
from hydranet_ros.outputs import (OutputSettings, compute_outputs, metric_depth, overlay,
                                  parts_needed, start_outputs)
from hydranet_ros.postprocess import Prediction
from hydranet_ros.predictor import inference_size
from hydranet_ros.presets import get_preset
from hydranet_ros.stats import NO_INPUT_S, OK, WARN, FrameStats, health


def test_newest_item_wins_and_drops_are_reported():
    slot: LatestSlots[int] = LatestSlots()
    assert slot.put(1) is False
    assert slot.put(2) is True  # 1 was never taken
    assert slot.take(timeout=0) == 2
    assert slot.take(timeout=0.01) is None
    assert slot.put(3) is False


def test_take_waits_and_close_wakes():
    slot: LatestSlots[int] = LatestSlots()
    got = []
    consumer = threading.Thread(target=lambda: got.append(slot.take()))
    consumer.start()
    time.sleep(0.05)
    slot.put(7)
    consumer.join(1)
    assert got == [7]
    consumer = threading.Thread(target=lambda: got.append(slot.take()))
    consumer.start()
    slot.close()
    consumer.join(1)
    assert not consumer.is_alive() and got == [7, None]
    slot.put(8)
    assert slot.take(timeout=0) is None


def test_a_woken_consumer_runs_before_the_producer_next_blocks():
    """The node's image callback runs on rclpy's executor thread, which then keeps the
    interpreter's lock through its own Python until it next waits; ``put`` hands it to the
    worker it woke. Here the producer stays busy in Python for 20 ms after each put, with
    forced switches of the lock put off for a second: without the hand-over every item
    waited those 20 ms (measured: 20.1 to 20.4 ms), with it the median was 0.1 ms on this
    project's 2-core machine."""
    import sys
    slots: LatestSlots[float] = LatestSlots()
    delays: list[float] = []

    def consume() -> None:
        while (sent := slots.take(timeout=5)) is not None:
            delays.append(time.perf_counter() - sent)

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1.0)
    consumer = threading.Thread(target=consume)
    consumer.start()
    try:
        for _ in range(15):
            time.sleep(0.01)  # the consumer is waiting again
            slots.put(time.perf_counter())
            busy_until = time.perf_counter() + 0.02
            while time.perf_counter() < busy_until:
                pass
    finally:
        sys.setswitchinterval(interval)
        time.sleep(0.05)  # the last item taken
        slots.close()
        consumer.join(5)
    assert len(delays) == 15
    assert sorted(delays)[7] < 0.01, delays  # the median: well before the 20 ms were over


def test_a_producer_with_nobody_waiting_does_not_yield(monkeypatch):
    import hydranet_ros.latest as latest
    yields = []
    monkeypatch.setattr(latest, "yield_lock", lambda: yields.append(1))
    slots: LatestSlots[int] = LatestSlots()
    for item in range(5):
        slots.put(item)
    assert yields == [] and slots.take(timeout=0) == 4


def test_stats_windows_and_totals():
    now = [0.0]
    stats = FrameStats(clock=lambda: now[0])
    for _ in range(10):
        stats.received()
    stats.dropped(6)
    stats.rejected("encoding")
    for _ in range(3):
        stats.processed(0.1, 0.12, 0.2)
    now[0] = 2.0
    snap = stats.snapshot()
    assert (snap.input_hz, snap.processed_hz) == (5.0, 1.5)
    assert (snap.dropped, snap.rejected, snap.rejections) == (6, 1, {"encoding": 1})
    level, message = health(snap)
    assert level == WARN and "dropping frames: processed 3 of 9" in message
    now[0] = 3.0
    stats.received()
    stats.processed(0.1, 0.1, 0.15)
    snap = stats.snapshot()
    assert (snap.received, snap.total_received, snap.total_processed) == (1, 11, 4)
    assert health(snap) == (OK, "ok")


def test_frames_skipped_without_subscribers_are_not_drops():
    """Nobody subscribes: every frame is skipped on purpose, the report stays OK."""
    stats = FrameStats()
    for _ in range(5):
        stats.received()
        stats.idle()
    snap = stats.snapshot()
    assert (snap.idle, snap.total_idle, snap.processed) == (5, 5, 0)
    assert health(snap) == (OK, "idle: no output has a subscriber")
    stats.received()
    stats.dropped()
    assert health(stats.snapshot())[0] == WARN  # a real drop, with nothing processed


def test_a_silent_camera_warns():
    """Image topics the node found silent while their outputs have subscribers: WARN."""
    snap = FrameStats().snapshot()
    assert health(snap) == (OK, "ok")
    snap.silent_inputs = ["/front/image", "/left/image"]
    assert health(snap) == (WARN, f"no image for {NO_INPUT_S:.0f} s or more on /front/image, "
                                  f"/left/image, whose outputs have subscribers")


def test_growing_latency_warns():
    stats = FrameStats()
    for _ in range(5):
        stats.received()
        stats.processed(0.1, 0.6, 0.7)
    level, message = health(stats.snapshot())
    assert level == WARN and "latency growing: 600 ms from receipt to publish for 100 ms" in message


def test_inference_size():
    assert inference_size((480, 640), 0, 0) is None
    assert inference_size((480, 640), 320, 240) == (240, 320)
    assert inference_size((480, 640), 320, 0) == (240, 320)
    assert inference_size((480, 640), 0, 120) == (120, 160)


def test_parts_needed():
    assert parts_needed(set()) == set()
    assert parts_needed({"overlay"}) == {"labels"}
    assert parts_needed({"points"}) == {"labels", "depth"}
    assert parts_needed({"normals_color", "depth_color"}) == {"normals", "depth"}


def prediction(h=6, w=8) -> Prediction:
    labels = np.zeros((h, w), np.uint8)
    labels[:, w // 2:] = 2
    depth = np.linspace(1, 100, h * w, dtype=np.float32).reshape(h, w)
    normals = np.zeros((h, w, 3), np.float32)
    normals[..., 2] = -1
    return Prediction(labels, depth, normals)


def test_compute_only_what_is_wanted():
    preset = get_preset("kitti")
    rgb = np.full((6, 8, 3), 200, np.uint8)
    out = compute_outputs(rgb, prediction(), preset, OutputSettings(), {"labels", "depth"})
    assert set(out) == {"labels", "depth"}
    assert np.isposinf(out["depth"][prediction().depth > 80]).all()  # KITTI range: 80 m
    intr = Intrinsics(10, 10, 4, 3, 8, 6)
    everything = {"labels", "segmentation_color", "overlay", "depth", "depth_color", "normals",
                  "normals_color", "points"}
    out = compute_outputs(rgb, prediction(), preset, OutputSettings(), everything, intr)
    assert set(out) == everything
    assert out["points"].shape == (6, 8)
    out = compute_outputs(rgb, prediction(), preset, OutputSettings(), everything, None)
    assert "points" not in out  # no camera info yet
    settings = OutputSettings(pointcloud_exclude_classes=("unicorn",))
    with pytest.raises(HydraNetError, match="unknown class name"):
        compute_outputs(rgb, prediction(), preset, settings, {"points"}, intr)


def test_navigation_outputs_do_not_wait_for_the_views(monkeypatch):
    """start_outputs returns with labels, depth and the cloud made while a view is still
    being made on a worker thread; reading the view waits for it; the arrays are those of
    compute_outputs, and a cloud coloured by class makes the class colours only once."""
    release = threading.Event()
    made: list[str] = []
    real_normals, real_labels = outputs_module.colorize_normals, outputs_module.colorize_labels

    def slow_normals(normals):
        assert release.wait(10), "the test never released the view"
        return real_normals(normals)
    monkeypatch.setattr(outputs_module, "colorize_normals", slow_normals)
    monkeypatch.setattr(outputs_module, "colorize_labels",
                        lambda *a: made.append("colorize_labels") or real_labels(*a))
    preset = get_preset("kitti")
    rgb = np.full((6, 8, 3), 200, np.uint8)
    intr = Intrinsics(10, 10, 4, 3, 8, 6)
    everything = {"labels", "segmentation_color", "overlay", "depth", "depth_color", "normals",
                  "normals_color", "points"}
    out = start_outputs(rgb, prediction(), preset, OutputSettings(), everything, intr)
    assert not release.is_set() and out["points"].shape == (6, 8)  # made, the view still not
    assert list(out) == ["labels", "points", "depth", "normals", "segmentation_color",
                         "overlay", "depth_color", "normals_color"]  # publishing order
    assert "normals_color" in out and "confidence" not in out and len(out) == 8
    release.set()
    expected = compute_outputs(rgb, prediction(), preset, OutputSettings(), everything, intr)
    assert all(np.array_equal(out[n], expected[n], equal_nan=n == "depth")
               for n in expected if n != "points")
    assert out["points"].tobytes() == expected["points"].tobytes()
    made.clear()
    out = start_outputs(rgb, prediction(), preset,
                        OutputSettings(pointcloud_color="segmentation"), everything, intr)
    out.wait()
    assert made == ["colorize_labels"]  # for the cloud, reused by both views


def test_overlay_and_metric_depth():
    rgb = np.full((1, 2, 3), 100, np.uint8)
    colors = np.full((1, 2, 3), 200, np.uint8)
    assert overlay(rgb, colors, 0.0).tolist() == rgb.tolist()
    assert overlay(rgb, colors, 1.0).tolist() == colors.tolist()
    assert overlay(rgb, colors, 0.25)[0, 0].tolist() == [125, 125, 125]
    depth = np.array([-1.0, 0.0, 5.0, np.inf, 20.0, np.nan], np.float32)
    # REP 117: +Inf beyond the range, NaN where there is no estimate
    assert np.array_equal(metric_depth(depth, 10.0), [np.nan, np.nan, 5.0, np.inf, np.inf,
                                                      np.nan], equal_nan=True)
    assert np.array_equal(metric_depth(depth, np.inf), [np.nan, np.nan, 5.0, np.inf, 20.0,
                                                        np.nan], equal_nan=True)


def test_throttle_one_per_kind_and_period():
    from hydranet_ros.throttle import Throttle
    now = [0.0]
    lines = []
    throttle = Throttle(lines.append, 5.0, clock=lambda: now[0])
    assert throttle.warn("encoding", "a")
    assert not throttle.warn("encoding", "b")
    assert throttle.warn("data", "c")  # another kind is not held back
    now[0] = 4.9
    assert not throttle.warn("encoding", "d")
    now[0] = 5.0
    assert throttle.warn("encoding", "e")
    assert lines == ["a", "c", "e (2 similar warning(s) suppressed)"]


def test_frames_of_several_cameras_are_taken_together():
    slots: LatestSlots[int] = LatestSlots(("front", "left"))
    slots.put(1, "front")
    assert slots.put(2, "front") is True
    threading.Timer(0.05, slots.put, (3, "left")).start()
    started = time.monotonic()
    assert slots.take_all(timeout=1, gather_s=60.0) == {"front": 2, "left": 3}
    # stopped waiting once every camera had a frame, long before the 60 s gathering ended
    assert time.monotonic() - started < 30.0
    slots.put(4, "left")
    assert slots.take_all(timeout=0, gather_s=0.05) == {"left": 4}  # gathering gives up
    assert slots.take_all(timeout=0.01) == {}
