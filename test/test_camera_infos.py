"""CameraInfos: the camera_info stamped as an image, else the newest, within a bounded
history (the node's and hydranet-bag's pairing of images with their calibration)."""

from __future__ import annotations

from types import SimpleNamespace

from hydranet_ros.ros.camera_infos import HISTORY, CameraInfos


def info(sec: int, nanosec: int = 0, name: str = "") -> SimpleNamespace:
    stamp = SimpleNamespace(sec=sec, nanosec=nanosec)
    return SimpleNamespace(header=SimpleNamespace(stamp=stamp), name=name or f"{sec}.{nanosec}")


def test_the_stamped_one_wins_over_the_newest():
    infos = CameraInfos()
    assert infos.for_image(info(1).header) is None  # none yet
    first, second = info(1, 5), info(2, 5)
    infos.add(first)
    infos.add(second)
    assert infos.for_image(info(1, 5).header) is first
    assert infos.for_image(info(1, 6).header) is second  # nanoseconds count: no match
    assert infos.for_image(info(9).header) is second


def test_the_history_keeps_the_newest_ones():
    infos = CameraInfos()
    kept = [info(k) for k in range(HISTORY + 5)]
    for msg in kept:
        infos.add(msg)
    assert infos.for_image(info(4).header) is kept[-1]  # gone: the newest serves
    assert infos.for_image(info(5).header) is kept[5]
    assert len(infos._by_stamp) == HISTORY


def test_a_stamp_sent_again_is_the_newest_and_replaces_the_old():
    infos = CameraInfos(history=2)
    old, other, again = info(1, name="old"), info(2), info(1, name="again")
    for msg in (old, other, again):
        infos.add(msg)
    assert infos.newest is again and infos.for_image(old.header) is again
    infos.add(info(3))  # evicts the oldest kept: 2, not the re-sent 1
    assert infos.for_image(info(1).header) is again
    assert infos.for_image(info(2).header).name == "3.0"


def test_a_late_copy_of_one_kept_changes_nothing():
    """A latched publisher reaches both of the node's camera_info subscriptions: the second
    copy of an older message, arriving after a newer one, must not make it the newest."""
    infos = CameraInfos()
    older, newer = info(1), info(2)
    infos.add(older)
    infos.add(newer)
    infos.add(info(1))  # the same message again (equal fields)
    assert infos.newest is newer and infos.for_image(info(1).header) is older
