"""``hydranet-soak``: hydranet_node against the synthetic camera for a long time (default 10
minutes), every output subscribed; reports frames processed and dropped, stamp-to-receipt
latency p50/p99 per window and the node's resident memory over time, with ``soak.json`` and a
plot ``soak.png``."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ..errors import HydraNetError
from ..memory import keep_freed_memory
from ..outputs import OUTPUT_BY_NAME, OUTPUTS
from ..ros.processes import start, stop
from .common import (add_engine_arguments, description, fresh_folder,
                     node_engine_parameters, positive, run_main)
from .export import parse_size

PROG = "hydranet-soak"
NAMESPACE = "/hydranet_soak"
#: Growth of resident memory from the end of the first window to the end that is acceptable.
MEMORY_GROWTH_GOAL = 0.05


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=PROG, description=description(__doc__))
    parser.add_argument("--minutes", type=positive, default=10.0)
    parser.add_argument("--window", type=positive, default=60.0, help="seconds per reported window")
    parser.add_argument("--rate", type=positive, default=20.0, help="camera frames per second")
    parser.add_argument("--size", default="240x320", help="camera HEIGHTxWIDTH")
    parser.add_argument("--weights", default="synthetic")
    add_engine_arguments(parser)
    parser.add_argument("--out", type=Path, default=Path("soak_out"))
    parser.add_argument("--overwrite", action="store_true")
    return parser.parse_args(argv)


def resident_mb(pid: int) -> float:
    """VmRSS of a process in MiB (Linux)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise HydraNetError(f"no VmRSS for process {pid}")


class Listener:
    """Subscribes to every output (serialised, cheap) and times segmentation/labels."""

    def __init__(self) -> None:
        import rclpy
        from diagnostic_msgs.msg import DiagnosticArray
        from rclpy.qos import QoSProfile, ReliabilityPolicy
        from rclpy.serialization import deserialize_message
        from sensor_msgs.msg import Image

        from ..ros.conversions import output_topic_types
        self._deserialize, self._Image = deserialize_message, Image
        keep_freed_memory()  # a subscriber of large samples, set up as the README advises
        self.node = rclpy.create_node("hydranet_soak_listener", namespace=NAMESPACE)
        qos = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE)
        self.latencies: list[tuple[float, float]] = []  # (monotonic receipt, seconds)
        self.diagnostics: dict[str, str] = {}
        labels = OUTPUT_BY_NAME["labels"].topic
        for topic, msg_type in output_topic_types(spec.name for spec in OUTPUTS).items():
            callback = self._on_labels if topic == labels else (lambda _: None)
            self.node.create_subscription(msg_type, topic, callback, qos, raw=True)
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diagnostics, 10)

    def _on_labels(self, raw: bytes) -> None:
        stamp = self._deserialize(raw, self._Image).header.stamp
        now = time.time()
        self.latencies.append((time.monotonic(), now - stamp.sec - stamp.nanosec * 1e-9))

    def _on_diagnostics(self, msg) -> None:
        for status in msg.status:
            if status.name.endswith("HydraNet"):
                self.diagnostics = {kv.key: kv.value for kv in status.values}


def summarise(latencies: list[tuple[float, float]], memory: list[tuple[float, float]],
              started: float, duration: float, window: float) -> list[dict]:
    """Per window: frames received, latency p50/p99 (ms), resident memory at its end."""
    rows = []
    for first in np.arange(started, started + duration - 1e-6, window):
        last = first + window
        values = [v for t, v in latencies if first <= t < last]
        rss = [m for t, m in memory if t < last]
        rows.append({"start_s": round(first - started), "frames": len(values),
                     "latency_p50_ms": round(float(np.percentile(values, 50)) * 1e3, 1) if values else None,
                     "latency_p99_ms": round(float(np.percentile(values, 99)) * 1e3, 1) if values else None,
                     "rss_mb": round(rss[-1], 1) if rss else None})
    return rows


def plot(latencies, memory, started: float, path: Path, title: str) -> bool:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(10, 6), sharex=True)
    times = np.array([t - started for t, _ in latencies]) / 60
    values = np.array([v for _, v in latencies]) * 1e3
    top.plot(times, values, ",", alpha=0.5, label="each frame")
    if len(values) >= 20:
        k = max(10, len(values) // 100)
        rolling = [np.percentile(values[max(0, i - k):i + 1], [50, 99]) for i in range(len(values))]
        top.plot(times, [r[0] for r in rolling], label=f"p50 (last {k})")
        top.plot(times, [r[1] for r in rolling], label=f"p99 (last {k})")
    top.set_ylabel("stamp to receipt (ms)")
    top.legend(fontsize=8)
    top.set_title(title, fontsize=10)
    bottom.plot([(t - started) / 60 for t, _ in memory], [m for _, m in memory])
    bottom.set_ylabel("node resident memory (MiB)")
    bottom.set_xlabel("minutes")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    height, width = parse_size(args.size)
    fresh_folder(args.out, args.overwrite, ("logs",), ("soak.json", "soak.png"))
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    import rclpy
    from rclpy.signals import SignalHandlerOptions
    rclpy.init(signal_handler_options=SignalHandlerOptions.NO)  # signals: run_main's
    processes: dict = {}
    listener = None
    memory: list[tuple[float, float]] = []
    duration = args.minutes * 60
    try:  # from the first child on: a Ctrl-C at any point stops every child started
        processes["hydranet_node"] = start(
            "hydranet_node", "hydranet_ros.ros.node",
            {"weights": args.weights, **node_engine_parameters(args)}, args.out / "logs",
            NAMESPACE)
        processes["synthetic_camera"] = start(
            "synthetic_camera", "hydranet_ros.ros.synthetic_camera",
            {"rate": args.rate, "width": width, "height": height}, args.out / "logs", NAMESPACE)
        listener = Listener()
        pid = processes["hydranet_node"].pid
        while not listener.latencies:  # ready: the first frame came through
            rclpy.spin_once(listener.node, timeout_sec=0.1)
            for name, proc in processes.items():
                if proc.poll() is not None:
                    raise HydraNetError(f"{name} exited early; see {args.out / 'logs'}")
        started = time.monotonic()
        listener.latencies.clear()
        next_sample = started
        with tqdm(total=round(duration), unit="s", desc="soak", file=sys.stderr) as bar:
            while (now := time.monotonic()) < started + duration:
                rclpy.spin_once(listener.node, timeout_sec=0.05)
                if now >= next_sample:
                    memory.append((now, resident_mb(pid)))
                    next_sample += 5.0
                    bar.n = round(now - started)
                    bar.set_postfix(frames=len(listener.latencies), rss=f"{memory[-1][1]:.0f}MB")
                if processes["hydranet_node"].poll() is not None:
                    raise HydraNetError(f"hydranet_node exited during the soak; see {args.out / 'logs'}")
        memory.append((time.monotonic(), resident_mb(pid)))
    finally:
        if listener is not None:
            listener.node.destroy_node()
        rclpy.try_shutdown()
        stop(processes)
    rows = summarise(listener.latencies, memory, started, duration, args.window)
    first = memory[0][1]
    after_first_window = next((m for t, m in memory if t >= started + args.window), first)
    end = memory[-1][1]
    report = {"minutes": args.minutes, "camera": f"{width}x{height} at {args.rate} Hz",
              "weights": args.weights, "frames_received": len(listener.latencies),
              "node_diagnostics": listener.diagnostics, "windows": rows,
              "rss_start_mb": round(first, 1), "rss_after_first_window_mb": round(after_first_window, 1),
              "rss_end_mb": round(end, 1),
              "rss_growth_after_first_window": round(end / after_first_window - 1, 4)}
    (args.out / "soak.json").write_text(json.dumps(report, indent=2) + "\n")
    title = f"hydranet_node soak: {report['camera']}, {args.minutes:g} min"
    charted = plot(listener.latencies, memory, started, args.out / "soak.png", title)
    print(f"frames received {report['frames_received']}, processed "
          f"{listener.diagnostics.get('frames processed', '?')}, dropped "
          f"{listener.diagnostics.get('frames dropped', '?')}, rejected "
          f"{listener.diagnostics.get('frames rejected', '?')}")
    for row in rows:
        print(f"  {row['start_s']:>5d} s: {row['frames']:>5d} frames, latency p50 "
              f"{row['latency_p50_ms']} ms, p99 {row['latency_p99_ms']} ms, RSS {row['rss_mb']} MiB")
    growth = report["rss_growth_after_first_window"]
    print(f"resident memory {first:.0f} MiB at start, {after_first_window:.0f} after the first "
          f"window, {end:.0f} at the end: {growth * 100:+.1f} % "
          f"({'within' if growth < MEMORY_GROWTH_GOAL else 'ABOVE'} the 5 % goal)")
    print(f"wrote {args.out / 'soak.json'}" + (f" and {args.out / 'soak.png'}" if charted else ""),
          file=sys.stderr)
    return 0


def entry_point() -> None:
    sys.exit(run_main(main, prog=PROG))


if __name__ == "__main__":
    entry_point()
