"""Frame accounting for diagnostics: rates, drops, rejections, inference time and latency.

Counts are kept per reporting window (reset by each snapshot) and in total, so that a report
says both what is happening now and what happened since start-up.
"""

from __future__ import annotations

import threading
import time
from collections import Counter, deque
from dataclasses import dataclass, field

import numpy as np

OK, WARN, ERROR = 0, 1, 2  # the levels of diagnostic_msgs/DiagnosticStatus
#: WARN when fewer than this share of the frames waiting to be processed get processed.
MIN_PROCESSED_SHARE = 0.5
#: WARN when frames wait this many times longer than inference before being published.
LATENCY_GROWTH_FACTOR = 2.0
LATENCY_GROWTH_MARGIN_S = 0.05
#: WARN when a camera whose outputs have subscribers has sent no image for this long (a camera
#: that stopped or never started, a misnamed topic, frames lost by the transport): the
#: silence a consumer would otherwise see without a word. Long enough for a camera to start.
NO_INPUT_S = 10.0
#: Frames whose stamp-to-publish latency the long-run median covers.
LONG_RUN_FRAMES = 10_000


@dataclass
class Snapshot:
    period_s: float
    received: int
    processed: int
    dropped: int
    rejected: int
    inference_s: list[float]
    receipt_latency_s: list[float]
    stamp_latency_s: list[float]
    total_received: int
    total_processed: int
    total_dropped: int
    total_rejected: int
    total_batches: int = 0  # network calls; several cameras' frames share one
    #: Frames skipped on purpose because nobody subscribed to any output.
    idle: int = 0
    total_idle: int = 0
    rejections: dict[str, int] = field(default_factory=dict)  # by reason, in total
    #: Stamp-to-publish latency of the last LONG_RUN_FRAMES frames, across windows.
    long_run_stamp_latency_s: list[float] = field(default_factory=list)
    #: Frames published without the point cloud wanted of them: camera_info unusable.
    without_camera_info: int = 0
    total_without_camera_info: int = 0
    #: Image topics silent for NO_INPUT_S while their outputs have subscribers (the node's).
    silent_inputs: list[str] = field(default_factory=list)

    @property
    def input_hz(self) -> float:
        return self.received / self.period_s if self.period_s > 0 else 0.0

    @property
    def processed_hz(self) -> float:
        return self.processed / self.period_s if self.period_s > 0 else 0.0


def median(values: list[float]) -> float:
    return float(np.median(values)) if values else float("nan")


def health(snap: Snapshot) -> tuple[int, str]:
    """A diagnostic level and a one-line summary of what is wrong (or 'ok')."""
    problems = []
    waiting = snap.processed + snap.dropped  # skipped and rejected frames are not drops
    if not snap.idle and waiting and snap.processed < MIN_PROCESSED_SHARE * waiting:
        problems.append(f"dropping frames: processed {snap.processed} of {waiting}")
    wait = median(snap.receipt_latency_s)
    inference = median(snap.inference_s)
    if snap.processed and wait > LATENCY_GROWTH_FACTOR * inference + LATENCY_GROWTH_MARGIN_S:
        problems.append(f"latency growing: {wait * 1e3:.0f} ms from receipt to publish for "
                        f"{inference * 1e3:.0f} ms of inference")
    if snap.rejected:
        problems.append(f"rejected {snap.rejected} bad frame(s)")
    if snap.without_camera_info:
        problems.append(f"{snap.without_camera_info} frame(s) without the point cloud: "
                        f"camera_info missing or does not describe the image")
    if snap.silent_inputs:
        problems.append(f"no image for {NO_INPUT_S:.0f} s or more on "
                        f"{', '.join(snap.silent_inputs)}, whose outputs have subscribers")
    if problems:
        return WARN, "; ".join(problems)
    if snap.idle and not snap.processed:
        return OK, "idle: no output has a subscriber"
    return OK, "ok"


class FrameStats:
    def __init__(self, clock=time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._since = clock()
        self._totals = Counter()
        self._rejections: Counter = Counter()  # by reason, since start-up
        self._long_run_stamp: deque[float] = deque(maxlen=LONG_RUN_FRAMES)
        self._reset()

    def _reset(self) -> None:
        self._window = Counter()
        self._inference: list[float] = []
        self._receipt: list[float] = []
        self._stamp: list[float] = []

    def _count(self, key: str, n: int = 1) -> None:
        with self._lock:
            self._window[key] += n
            self._totals[key] += n

    def received(self) -> None:
        self._count("received")

    def dropped(self, n: int = 1) -> None:
        self._count("dropped", n)

    def idle(self) -> None:
        """A frame skipped because nobody subscribes to any output: not a drop."""
        self._count("idle")

    def rejected(self, reason: str) -> None:
        with self._lock:
            self._rejections[reason] += 1
        self._count("rejected")

    def without_camera_info(self) -> None:
        """A frame published without the point cloud (and depth/camera_info) a subscriber
        wants, because no camera_info has come or it cannot describe the image."""
        self._count("without_camera_info")

    def processed(self, inference_s: float, receipt_latency_s: float, stamp_latency_s: float) -> None:
        with self._lock:
            self._inference.append(inference_s)
            self._receipt.append(receipt_latency_s)
            self._stamp.append(stamp_latency_s)
            self._long_run_stamp.append(stamp_latency_s)
        self._count("processed")

    def batch(self) -> None:
        """One network call (for one or several frames)."""
        self._count("batches")

    def snapshot(self) -> Snapshot:
        """What happened since the previous snapshot (and in total), starting a new window."""
        with self._lock:
            now = self._clock()
            snap = Snapshot(
                period_s=now - self._since,
                received=self._window["received"], processed=self._window["processed"],
                dropped=self._window["dropped"], rejected=self._window["rejected"],
                inference_s=self._inference, receipt_latency_s=self._receipt,
                stamp_latency_s=self._stamp,
                total_received=self._totals["received"], total_processed=self._totals["processed"],
                total_dropped=self._totals["dropped"], total_rejected=self._totals["rejected"],
                total_batches=self._totals["batches"], rejections=dict(self._rejections),
                idle=self._window["idle"], total_idle=self._totals["idle"],
                long_run_stamp_latency_s=list(self._long_run_stamp),
                without_camera_info=self._window["without_camera_info"],
                total_without_camera_info=self._totals["without_camera_info"])
            self._since = now
            self._reset()
            return snap
