"""The point cloud's ``is_dense`` taken from the GPU's flag against read from the cloud on the
host, as a CUDA engine's node publishes the cloud.

    .venv/bin/python benchmarks/cloud_is_dense.py [--frames 80] [--runs 2]

A 640x480 organized cloud with 40 rows of NaN points (a sky), packed as the CUDA engine packs
it (``device_outputs.pack``, with ``dense_flag`` beside it), published serialized in place
(``ros/serialized.py``) to a reliable subscriber in another process. The CPU's caches are
flushed before each frame, as the cloud arrives by DMA. In turns, per frame: the message with
``is_dense`` from the flag (``FrameArrays.cloud_is_dense``, what the node does) and with the
cloud scanned on the host (the flag left out). Per way, medians: making the message, making
and publishing it, and when the subscriber had it after the publish began.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")

sys.path.insert(0, str(Path(__file__).parent))
from publish_probe import SUBSCRIBER, frame_arrays  # noqa: E402

from hydranet_ros.memory import TUNABLES_VARIABLE, keep_freed_memory, malloc_tunables  # noqa: E402
from hydranet_ros.ros.transport import configure_large_data  # noqa: E402

#: More than the last-level cache of the machines measured, written before each frame.
FLUSH_BYTES = 96 << 20


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=80)
    parser.add_argument("--runs", type=int, default=2)
    args = parser.parse_args()
    print(configure_large_data("rmw_fastrtps_cpp").message)
    keep_freed_memory()  # as hydranet_node does
    import rclpy
    import torch
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from std_msgs.msg import Header

    from hydranet_ros.device_outputs import CLOUD_DENSE, FrameArrays, dense_flag, pack, unpack
    from hydranet_ros.ros.conversions import rclpy_kit
    from hydranet_ros.ros.serialized import message_in_place, publish

    cloud = frame_arrays(np.random.default_rng(0))["points"]
    cloud["z"][:40] = np.nan
    tensor = torch.from_numpy(cloud.view(np.float32).reshape(*cloud.shape, 5))
    packed, layouts = pack([{"points": tensor, CLOUD_DENSE: dense_flag(tensor)}])
    flagged = unpack(packed.numpy(), layouts)[0]
    scanned = FrameArrays(dict(flagged), flagged.buffer, {"points": flagged.room("points")[1]})
    ways = {"flag from the GPU": flagged, "scanned on the host": scanned}
    flush = np.ones(FLUSH_BYTES, np.uint8)
    print(f"a 640x480 organized cloud ({cloud.nbytes / 1e6:.2f} MB), published in place to a "
          f"reliable subscriber in another process, caches flushed, medians of {args.frames}")
    print(f"  {'run':>3}  {'is_dense':<20} {'message':>9} {'and publish':>12} {'consumer':>9}")
    for run in range(1, args.runs + 1):
        subscriber = subprocess.Popen(
            [sys.executable, "-c", SUBSCRIBER, str(6 + args.frames * 0.1), "points", "reliable"],
            stdout=subprocess.PIPE, text=True,
            env={**os.environ, TUNABLES_VARIABLE: malloc_tunables(
                os.environ.get(TUNABLES_VARIABLE, ""))})
        rclpy.init()
        node = rclpy.create_node("cloud_is_dense")
        publisher = node.create_publisher(rclpy_kit().PointCloud2, "points", QoSProfile(
            depth=1, reliability=ReliabilityPolicy.RELIABLE))
        deadline = time.monotonic() + 10
        while publisher.get_subscription_count() == 0:
            if time.monotonic() > deadline:
                print("the subscriber did not match", file=sys.stderr)
                return 1
            time.sleep(0.05)
        time.sleep(1.0)
        made = {label: [] for label in ways}
        published = {label: [] for label in ways}
        for _ in range(args.frames):
            for index, (label, arrays) in enumerate(ways.items()):
                flush[::64] += 1
                header = Header(frame_id=f"v{index}")
                header.stamp.sec, header.stamp.nanosec = divmod(time.monotonic_ns(), 10**9)
                begun = time.perf_counter()
                msg = message_in_place("points", header, arrays)
                made[label].append((time.perf_counter() - begun) * 1e3)
                publish(publisher, msg)
                published[label].append((time.perf_counter() - begun) * 1e3)
                time.sleep(0.03)
        node.destroy_node()
        rclpy.shutdown()
        received = json.loads(subscriber.communicate()[0].strip().splitlines()[-1] or "{}")
        for index, label in enumerate(ways):
            got = received.get("points", {}).get(f"v{index}", [])
            consumer = f"{statistics.median(got):6.2f} ms" if got else "none"
            print(f"  {run:>3}  {label:<20} {statistics.median(made[label]):6.2f} ms "
                  f"{statistics.median(published[label]):9.2f} ms {consumer:>9} "
                  f"({len(got)} of {args.frames})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
