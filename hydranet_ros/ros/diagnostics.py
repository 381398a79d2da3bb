"""/diagnostics reports (diagnostic_msgs/DiagnosticArray) from the node's frame statistics."""

from __future__ import annotations

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue

from ..stats import LONG_RUN_FRAMES, Snapshot, health, median

#: The median over many windows, for comparing the node with what its subscribers see.
LONG_RUN_KEY = f"latency stamp to publish p50, last {LONG_RUN_FRAMES} frames (ms)"
LEVELS = {0: DiagnosticStatus.OK, 1: DiagnosticStatus.WARN, 2: DiagnosticStatus.ERROR}


def _ms(seconds: float) -> str:
    return "nan" if np.isnan(seconds) else f"{seconds * 1e3:.1f}"


def _max(values: list[float]) -> float:
    return max(values) if values else float("nan")


def status_values(snap: Snapshot) -> dict[str, str]:
    values = {
        "input rate (Hz)": f"{snap.input_hz:.2f}",
        "processed rate (Hz)": f"{snap.processed_hz:.2f}",
        "frames received": str(snap.total_received),
        "frames processed": str(snap.total_processed),
        "frames dropped": str(snap.total_dropped),
        "frames rejected": str(snap.total_rejected),
        "frames skipped, no subscribers": str(snap.total_idle),
        "frames without point cloud, camera_info unusable": str(snap.total_without_camera_info),
        "frames per network call": f"{snap.total_processed / snap.total_batches:.2f}"
        if snap.total_batches else "nan",
        "inference time p50 (ms)": _ms(median(snap.inference_s)),
        "inference time max (ms)": _ms(_max(snap.inference_s)),
        "latency receipt to publish p50 (ms)": _ms(median(snap.receipt_latency_s)),
        "latency receipt to publish max (ms)": _ms(_max(snap.receipt_latency_s)),
        "latency stamp to publish p50 (ms)": _ms(median(snap.stamp_latency_s)),
        "latency stamp to publish max (ms)": _ms(_max(snap.stamp_latency_s)),
        LONG_RUN_KEY: _ms(median(snap.long_run_stamp_latency_s)),
    }
    for reason, count in sorted(snap.rejections.items()):
        values[f"rejected: {reason}"] = str(count)
    return values


def diagnostic_array(stamp, name: str, hardware_id: str, snap: Snapshot,
                     static: dict[str, str]) -> DiagnosticArray:
    level, message = health(snap)
    values = {**status_values(snap), **static}
    status = DiagnosticStatus(level=LEVELS[level], name=name, message=message,
                              hardware_id=hardware_id,
                              values=[KeyValue(key=k, value=v) for k, v in values.items()])
    array = DiagnosticArray(status=[status])
    array.header.stamp = stamp
    return array
