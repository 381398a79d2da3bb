"""How long publishing one frame's messages takes, and whether sending them side by side pays.

    .venv/bin/python benchmarks/publish_probe.py [--frames 30] [--reliability reliable]

A frame of the node's outputs at 640x480 (labels, confidence, four colour views, depth,
normals, an organized point cloud: about 16 MB) laid out as a CUDA engine returns them
(``device_outputs.pack``), published to a subscriber in another process as hydranet_node
publishes them, in turns: as rclpy messages, and serialized in place (``ros/serialized.py``).
Per variant the median wall time of a frame's publish and the page faults it took, and per
topic the median of each message's publish.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import time

import numpy as np

os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")

from hydranet_ros.geometry import POINT_DTYPE  # noqa: E402
from hydranet_ros.memory import TUNABLES_VARIABLE, keep_freed_memory, malloc_tunables  # noqa: E402
from hydranet_ros.ros.transport import configure_large_data  # noqa: E402

SUBSCRIBER = """
import sys, time, rclpy
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image, PointCloud2
rclpy.init(); node = rclpy.create_node('publish_probe_subscriber'); got = [0]
def count(msg): got[0] += 1
for topic in sys.argv[2].split(','):
    node.create_subscription(PointCloud2 if topic == 'points' else Image, topic, count,
                             QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE if sys.argv[3] == 'reliable' else ReliabilityPolicy.BEST_EFFORT))
end = time.monotonic() + float(sys.argv[1])
while time.monotonic() < end: rclpy.spin_once(node, timeout_sec=0.1)
print(f'subscriber received {got[0]} messages', file=sys.stderr)
"""


def frame_arrays(rng: np.random.Generator) -> dict[str, np.ndarray]:
    h, w = 480, 640
    cloud = np.zeros((h, w), POINT_DTYPE)
    for name in ("x", "y", "z", "rgb"):
        cloud[name] = rng.random((h, w), np.float32)
    return {"labels": rng.integers(0, 40, (h, w), np.uint8),
            "confidence": rng.random((h, w), np.float32),
            "segmentation_color": rng.integers(0, 255, (h, w, 3), np.uint8),
            "overlay": rng.integers(0, 255, (h, w, 3), np.uint8),
            "depth": rng.random((h, w), np.float32),
            "depth_color": rng.integers(0, 255, (h, w, 3), np.uint8),
            "normals": rng.random((h, w, 3), np.float32),
            "normals_color": rng.integers(0, 255, (h, w, 3), np.uint8),
            "points": cloud}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=30)
    parser.add_argument("--reliability", default="reliable", choices=("reliable", "best_effort"))
    args = parser.parse_args()
    print(configure_large_data("rmw_fastrtps_cpp").message)
    keep_freed_memory()  # as hydranet_node does
    import rclpy
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from std_msgs.msg import Header

    import torch

    from hydranet_ros.device_outputs import pack, unpack
    from hydranet_ros.ros.conversions import output_message, rclpy_kit
    from hydranet_ros.ros.serialized import message_in_place, publish

    tensors = {name: torch.from_numpy(array.view(np.float32).reshape(*array.shape, 5))
               if name == "points" else torch.from_numpy(array)
               for name, array in frame_arrays(np.random.default_rng(0)).items()}
    packed, layouts = pack([tensors])
    arrays = unpack(packed.numpy(), layouts)[0]
    seconds = 6 + args.frames * 2 * 0.1
    subscriber = subprocess.Popen([sys.executable, "-c", SUBSCRIBER, str(seconds),
                                   ",".join(arrays), args.reliability],
                                  env={**os.environ, TUNABLES_VARIABLE: malloc_tunables(
                                      os.environ.get(TUNABLES_VARIABLE, ""))})
    rclpy.init()
    node = rclpy.create_node("publish_probe")
    kit = rclpy_kit()
    qos = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE
                     if args.reliability == "reliable" else ReliabilityPolicy.BEST_EFFORT)
    publishers = {name: node.create_publisher(kit.PointCloud2 if name == "points" else kit.Image,
                                              name, qos) for name in arrays}
    deadline = time.monotonic() + 10
    while any(p.get_subscription_count() == 0 for p in publishers.values()):
        if time.monotonic() > deadline:
            print("the subscriber did not match", file=sys.stderr)
            return 1
        time.sleep(0.05)
    time.sleep(1.0)
    header = Header(frame_id="camera")
    makers = {"rclpy messages": lambda name, header, arrays: output_message(name, header,
                                                                            arrays[name], kit),
              "serialized in place": message_in_place}
    frame_ms: dict[str, list[float]] = {label: [] for label in makers}
    faults: dict[str, list[int]] = {label: [] for label in makers}
    topic_ms = {label: {name: [] for name in arrays} for label in makers}
    for _ in range(args.frames):
        for label, make in makers.items():
            begun = time.perf_counter()
            faulted = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
            for name in arrays:
                start = time.perf_counter()
                publish(publishers[name], make(name, header, arrays))
                topic_ms[label][name].append((time.perf_counter() - start) * 1e3)
            frame_ms[label].append((time.perf_counter() - begun) * 1e3)
            faults[label].append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faulted)
            time.sleep(0.05)
    for label, values in frame_ms.items():
        print(f"a frame's publish, {label}: {statistics.median(values):.2f} ms median, "
              f"{statistics.median(faults[label]):.0f} page faults")
    print(f"  {'topic':<20} {'MB':>5}  " + "  ".join(f"{label:>20}" for label in makers))
    for name in arrays:
        print(f"  {name:<20} {arrays[name].nbytes / 1e6:5.2f}  " + "  ".join(
            f"{statistics.median(topic_ms[label][name]):17.2f} ms" for label in makers))
    node.destroy_node()
    rclpy.shutdown()
    subscriber.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
