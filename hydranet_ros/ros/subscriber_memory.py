"""What a subscriber in another process pays for each large message it receives, with and
without keeping freed memory (``memory.py``).

One process publishes the node's organized point cloud (640x480: 6 MB) the way
hydranet_node does (reliable, depth 1, the large-data transport, freed memory kept); another
subscribes best-effort and takes each cloud deserialised, as a Python navigation node
would. Per message the subscriber records when its DDS reader had the sample and when its
callback ran (both after the stamp), and how many pages the process faulted in. Run once
with glibc's default malloc in the subscriber and once with ``memory.malloc_tunables()`` in
its environment.

    python -m hydranet_ros.ros.subscriber_memory [--frames 40] [--rate 10] [--size 480x640]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

import numpy as np

from ..geometry import POINT_DTYPE
from ..memory import TUNABLES_VARIABLE, keep_freed_memory, malloc_tunables

MODULE = "hydranet_ros.ros.subscriber_memory"  # the child runs it with python -m
TOPIC = "/hydranet_subscriber_memory/points"
#: Starts the child's one reply on its stdout.
REPLY = "subscriber-memory: "
MATCH_TIMEOUT_S = 30.0


def listen(frames: int, seconds: float) -> dict:
    """The child: ``frames`` clouds or ``seconds``, whichever ends first."""
    import rclpy
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import PointCloud2

    rclpy.init()
    node = rclpy.create_node("hydranet_subscriber_memory")
    reader_ms: list[float] = []
    callback_ms: list[float] = []
    faults: list[int] = []

    def on_cloud(msg, info) -> None:
        now = time.time()
        stamp = msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9
        reader_ms.append((info["received_timestamp"] * 1e-9 - stamp) * 1e3)
        callback_ms.append((now - stamp) * 1e3)
        faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt)

    node.create_subscription(PointCloud2, TOPIC, on_cloud,
                             QoSProfile(depth=5, reliability=ReliabilityPolicy.BEST_EFFORT))
    print(REPLY + "ready", flush=True)
    deadline = time.monotonic() + seconds
    while len(callback_ms) < frames and time.monotonic() < deadline:
        rclpy.spin_once(node, timeout_sec=0.05)
    node.destroy_node()
    rclpy.try_shutdown()
    # pages faulted in between the first message and the last, per message
    per_message = (faults[-1] - faults[0]) / (len(faults) - 1) if len(faults) > 1 else None
    return {"received": len(callback_ms), "reader_ms": reader_ms, "callback_ms": callback_ms,
            "faults_per_message": per_message}


def measure(tuned: bool, frames: int = 40, rate: float = 10.0,
            size: tuple[int, int] = (480, 640)) -> dict:
    """One run: ``frames`` clouds at ``rate`` Hz to a subscriber whose malloc keeps freed
    memory (``tuned``) or is glibc's default. Medians in ms after the stamp.

    The publisher is a process of its own too: Fast DDS reads its transport profile once per
    process, so a caller that already has a DDS participant (a test run) could not give the
    publisher the large-data transport."""
    command = [sys.executable, "-m", MODULE, "--publish", "tuned" if tuned else "default",
               "--frames", str(frames), "--rate", str(rate), "--size", f"{size[0]}x{size[1]}"]
    done = subprocess.run(command, capture_output=True, text=True, check=False,
                          timeout=frames / rate + 2 * MATCH_TIMEOUT_S + 30)
    reply = _reply(done.stdout)
    if reply is None:
        raise RuntimeError(f"the publishing process ended without a result (exit "
                           f"{done.returncode}): {done.stderr.strip()[-500:]}")
    return reply


def publish(tuned: bool, frames: int, rate: float, size: tuple[int, int]) -> dict:
    """The publishing process's side of ``measure``."""
    import rclpy
    from rclpy.utilities import get_rmw_implementation_identifier
    from sensor_msgs.msg import PointCloud2
    from std_msgs.msg import Header

    from .conversions import pointcloud_message
    from .qos import profile
    from .transport import configure_large_data

    keep_freed_memory()  # as hydranet_node
    env = {k: v for k, v in os.environ.items() if k != TUNABLES_VARIABLE}
    if tuned:
        env[TUNABLES_VARIABLE] = malloc_tunables(os.environ.get(TUNABLES_VARIABLE, ""))
    seconds = frames / rate + MATCH_TIMEOUT_S
    child = subprocess.Popen([sys.executable, "-m", MODULE, "--listen", str(frames),
                              "--seconds", str(seconds)], stdout=subprocess.PIPE, text=True,
                             env={**env, "PYTHONUNBUFFERED": "1"})
    rclpy.init()
    try:
        configure_large_data(get_rmw_implementation_identifier())
        node = rclpy.create_node("hydranet_subscriber_memory_publisher")
        publisher = node.create_publisher(PointCloud2, TOPIC, profile("reliable", 1))
        if not any(line.strip() == REPLY + "ready" for line in child.stdout):
            raise RuntimeError(f"the subscriber process ended before it was ready "
                               f"(exit {child.wait()})")
        deadline = time.monotonic() + MATCH_TIMEOUT_S
        while publisher.get_subscription_count() == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.5)  # the reader's side of the match settles
        rng = np.random.default_rng(0)
        cloud = np.zeros(size, POINT_DTYPE)
        for name in ("x", "y", "z", "rgb"):
            cloud[name] = rng.random(size, dtype=np.float32)
        for _ in range(frames):
            started = time.monotonic()
            now = time.time()
            header = Header(frame_id="camera_optical_frame")
            header.stamp.sec, header.stamp.nanosec = int(now), int(now % 1 * 1e9)
            publisher.publish(pointcloud_message(header, cloud))
            time.sleep(max(0.0, 1.0 / rate - (time.monotonic() - started)))
        out, _ = child.communicate(timeout=seconds + 10)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        rclpy.try_shutdown()
    result = _reply(out)
    if result is None:
        raise RuntimeError(f"the subscriber process ended without a reply (exit {child.returncode})")
    return {"tuned": tuned, "frames": frames, "received": result["received"],
            "reader_ms": _median(result["reader_ms"]),
            "callback_ms": _median(result["callback_ms"]),
            "faults_per_message": result["faults_per_message"]}


def _reply(output: str) -> dict | None:
    """A child's JSON reply, from the line of its output that starts with ``REPLY``."""
    line = next((line for line in output.splitlines() if line.startswith(REPLY)), None)
    return None if line is None else json.loads(line[len(REPLY):])


def _median(values: list[float]) -> float | None:
    return round(float(np.median(values)), 2) if values else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=40)
    parser.add_argument("--rate", type=float, default=10.0, help="clouds per second")
    parser.add_argument("--size", default="480x640", help="HEIGHTxWIDTH of the cloud")
    # the two child processes of each run
    parser.add_argument("--publish", choices=("default", "tuned"), help=argparse.SUPPRESS)
    parser.add_argument("--listen", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--seconds", type=float, default=60.0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.listen is not None:
        print(REPLY + json.dumps(listen(args.listen, args.seconds)), flush=True)
        return 0
    from ..cli.export import parse_size  # not in the subscriber: it imports torch
    height, width = parse_size(args.size)
    if args.publish is not None:
        result = publish(args.publish == "tuned", args.frames, args.rate, (height, width))
        print(REPLY + json.dumps(result), flush=True)
        return 0
    print(f"organized {width}x{height} clouds ({height * width * POINT_DTYPE.itemsize / 1e6:.1f}"
          f" MB) at {args.rate:g} Hz to a subscriber in another process; ms after the stamp "
          "(medians):")
    print(f"  {'subscriber malloc':<32}{'received':>10}{'DDS reader':>12}{'callback':>10}"
          f"{'pages faulted / message':>26}")
    for tuned in (False, True):
        run = measure(tuned, args.frames, args.rate, (height, width))
        label = "keeps freed memory (tunables)" if tuned else "glibc default"
        faults = run["faults_per_message"]
        print(f"  {label:<32}{run['received']:>6} / {run['frames']:<3}{run['reader_ms']:>12}"
              f"{run['callback_ms']:>10}{faults if faults is None else round(faults):>26}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
