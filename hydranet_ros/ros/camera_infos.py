"""A camera's recent camera_infos, found by the stamp of the image they describe.

A driver stamps an image and its camera_info alike (image_transport's CameraPublisher, and
what image_geometry and depth_image_proc pair by). Taking simply the newest camera_info gives
an image the calibration of another frame wherever the intrinsics change between frames (a
zoom lens, a driver that re-crops, a bag played back with another camera's info). So each
image takes the camera_info with its own stamp where one has come, and the newest otherwise:
a camera_info taken after its image, or one stamped differently (a static camera_info
publisher), still serves. Shared by the node and hydranet-bag.
"""
from __future__ import annotations

#: How many camera_infos are kept per camera: about a second of a 30 Hz camera, more than
#: the node's one-frame queue can hold an image back.
HISTORY = 32

#: The camera_info subscription's queue: camera_infos that come together while the node is
#: busy all reach the history (the images' queue keeps the newest alone).
QUEUE_DEPTH = 10


def stamp_key(header) -> tuple[int, int]:
    """A header's stamp as a hashable key."""
    return header.stamp.sec, header.stamp.nanosec


class CameraInfos:
    """The last ``HISTORY`` camera_infos of one camera by stamp, and the newest.

    ``add`` runs in a subscription's callback and ``for_image`` in the node's worker thread:
    the newest is one attribute and the lookup one dict read, each atomic under the GIL, and
    only ``add`` changes the dict, so no lock is needed."""

    def __init__(self, history: int = HISTORY) -> None:
        self.history = history
        self.newest = None
        self._by_stamp: dict[tuple[int, int], object] = {}

    def add(self, msg) -> None:
        """Keep ``msg``; the oldest kept goes when more than ``history`` are. A copy of one
        kept (a latched publisher reaches the node's two camera_info subscriptions) changes
        nothing: coming late, it would have made an older camera_info the newest again."""
        key = stamp_key(msg.header)
        if self._by_stamp.get(key) == msg:
            return
        self._by_stamp.pop(key, None)  # a re-sent stamp counts as the newest
        self._by_stamp[key] = msg
        if len(self._by_stamp) > self.history:
            del self._by_stamp[next(iter(self._by_stamp))]
        self.newest = msg

    def stamped(self, header):
        """The camera_info stamped as the image with ``header``, or None."""
        return self._by_stamp.get(stamp_key(header))

    def for_image(self, header):
        """The camera_info stamped as the image with ``header``, else the newest (None
        before any)."""
        return self._by_stamp.get(stamp_key(header), self.newest)
