"""How long publishing one frame's messages takes, and whether sending them side by side pays.

    .venv/bin/python benchmarks/publish_probe.py [--frames 30] [--reliability reliable]
                                                 [--spread 2[,4]]

A frame of the node's outputs at 640x480 (labels, confidence, four colour views, depth,
normals, an organized point cloud: 15.1 MB) laid out as a CUDA engine returns them
(``device_outputs.pack``, the cloud's ``is_dense`` flag included), published to a subscriber in
another process as hydranet_node publishes them (in its order), in turns: as rclpy messages,
serialized in place (``ros/serialized.py``), and for each ``--spread`` k serialized in place
from k threads, first on one DDS participant (the node's ``publish_threads``:
``serialized.SideBySide``), then on k participants (one rclpy context each, its run sent from a
pool thread). Fast DDS copies each sample twice: into the writer's payload, under that writer's
lock, and into the shared-memory segment, under a lock of the whole participant; threads can
overlap the first copies only, participants both. The outputs are cut into runs of about equal
bytes in the node's order, as the node cuts them (``serialized.shares``). Per variant: the
median wall time of a frame's publish and the page faults it took; what the subscriber saw (the
median time from the start of a frame's publish to its receipt of the frame's last message, of
its point cloud, and of the last of what a navigation stack waits for: mask, confidence and
cloud, ``outputs.NAVIGATION_OUTPUTS``; as its callbacks run: the consumer's view); and per
topic, for the
one-thread variants, each message's publish.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")

from hydranet_ros.geometry import POINT_DTYPE  # noqa: E402
from hydranet_ros.memory import TUNABLES_VARIABLE, keep_freed_memory, malloc_tunables  # noqa: E402
from hydranet_ros.outputs import NAVIGATION_OUTPUTS, PUBLISH_ORDER  # noqa: E402
from hydranet_ros.ros.transport import configure_large_data  # noqa: E402

#: Counts the messages, and per variant (the frame_id) and frame (the stamp: the publisher's
#: CLOCK_MONOTONIC when it began the frame) when the last one, the point cloud and the last of
#: a navigation stack's inputs (argv[4]) arrived; prints those as JSON.
SUBSCRIBER = """
import json, sys, time, rclpy
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image, PointCloud2
rclpy.init(); node = rclpy.create_node('publish_probe_subscriber'); got = [0]
arrivals = {'last': {}, 'points': {}, 'navigation': {}}
navigation = set(sys.argv[4].split(',')); pending = {}
def arrived(msg, topic):
    got[0] += 1
    stamp = msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec
    ms = (time.monotonic_ns() - stamp) / 1e6
    arrivals['last'][(msg.header.frame_id, stamp)] = ms
    if topic == 'points':
        arrivals['points'][(msg.header.frame_id, stamp)] = ms
    if topic in navigation:
        left = pending.setdefault((msg.header.frame_id, stamp), set(navigation))
        left.discard(topic)
        if not left:
            arrivals['navigation'][(msg.header.frame_id, stamp)] = ms
for topic in sys.argv[2].split(','):
    node.create_subscription(PointCloud2 if topic == 'points' else Image, topic,
                             lambda msg, topic=topic: arrived(msg, topic),
                             QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE if sys.argv[3] == 'reliable' else ReliabilityPolicy.BEST_EFFORT))
end = time.monotonic() + float(sys.argv[1])
while time.monotonic() < end: rclpy.spin_once(node, timeout_sec=0.1)
report = {}
for kind, seen in arrivals.items():
    for (variant, _), ms in seen.items(): report.setdefault(kind, {}).setdefault(variant, []).append(ms)
print(json.dumps(report))
print(f'subscriber received {got[0]} messages', file=sys.stderr)
"""


def frame_arrays(rng: np.random.Generator) -> dict[str, np.ndarray]:
    h, w = 480, 640
    cloud = np.zeros((h, w), POINT_DTYPE)
    for name in ("x", "y", "z", "rgb"):
        cloud[name] = rng.random((h, w), np.float32)
    arrays = {"labels": rng.integers(0, 40, (h, w), np.uint8),
              "confidence": rng.integers(0, 255, (h, w), np.uint8),
              "segmentation_color": rng.integers(0, 255, (h, w, 3), np.uint8),
              "overlay": rng.integers(0, 255, (h, w, 3), np.uint8),
              "depth": rng.random((h, w), np.float32),
              "depth_color": rng.integers(0, 255, (h, w, 3), np.uint8),
              "normals": rng.random((h, w, 3), np.float32),
              "normals_color": rng.integers(0, 255, (h, w, 3), np.uint8),
              "points": cloud}
    return {name: arrays[name] for name in PUBLISH_ORDER}  # the node's order


def median_text(values: list[float]) -> str:
    return f"{statistics.median(values):.2f} ms" if values else "none"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=30)
    parser.add_argument("--reliability", default="reliable", choices=("reliable", "best_effort"))
    parser.add_argument("--spread", default="2",
                        help="threads (and participants) to send from, comma-separated; '' none")
    args = parser.parse_args()
    spreads = [int(k) for k in args.spread.split(",") if k.strip() and int(k) > 1]
    print(configure_large_data("rmw_fastrtps_cpp").message)
    keep_freed_memory()  # as hydranet_node does
    import rclpy
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from std_msgs.msg import Header

    import torch

    from hydranet_ros.device_outputs import CLOUD_DENSE, dense_flag, pack, unpack
    from hydranet_ros.ros.conversions import output_message, rclpy_kit
    from hydranet_ros.ros.serialized import SideBySide, message_in_place, publish, shares

    tensors = {name: torch.from_numpy(array.view(np.float32).reshape(*array.shape, 5))
               if name == "points" else torch.from_numpy(array)
               for name, array in frame_arrays(np.random.default_rng(0)).items()}
    tensors[CLOUD_DENSE] = dense_flag(tensors["points"])  # as the CUDA engine sends the cloud
    packed, layouts = pack([tensors])
    arrays = unpack(packed.numpy(), layouts)[0]
    names = list(arrays)
    variants = [("rclpy messages", 1, 1), ("serialized in place", 1, 1)]
    for k in spreads:
        variants += [(f"in place, {k} threads", k, 1), (f"in place, {k} participants", k, k)]
    participants = max(p for _, _, p in variants)
    seconds = 8 + participants + args.frames * len(variants) * 0.06
    subscriber = subprocess.Popen([sys.executable, "-c", SUBSCRIBER, str(seconds),
                                   ",".join(names), args.reliability,
                                   ",".join(n for n in NAVIGATION_OUTPUTS if n in names)],
                                  stdout=subprocess.PIPE,
                                  text=True,
                                  env={**os.environ, TUNABLES_VARIABLE: malloc_tunables(
                                      os.environ.get(TUNABLES_VARIABLE, ""))})
    contexts = [None] + [rclpy.Context() for _ in range(participants - 1)]
    for context in contexts:
        rclpy.init(context=context)
    nodes = [rclpy.create_node(f"publish_probe_{i}", context=context)
             for i, context in enumerate(contexts)]
    kit = rclpy_kit()
    qos = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE
                     if args.reliability == "reliable" else ReliabilityPolicy.BEST_EFFORT)
    publishers = [{name: node.create_publisher(kit.PointCloud2 if name == "points" else kit.Image,
                                               name, qos) for name in names} for node in nodes]
    deadline = time.monotonic() + 10 + participants
    while any(p.get_subscription_count() == 0 for side in publishers for p in side.values()):
        if time.monotonic() > deadline:
            print("the subscriber did not match", file=sys.stderr)
            return 1
        time.sleep(0.05)
    time.sleep(1.0)
    sizes = [arrays[name].nbytes for name in names]

    def rclpy_message(name, header, arrays):
        return output_message(name, header, arrays[name], kit)

    def send(side: int, group: list[str], header, make, timings) -> None:
        for name in group:
            start = time.perf_counter()
            publish(publishers[side][name], make(name, header, arrays))
            timings[name].append((time.perf_counter() - start) * 1e3)

    pool = ThreadPoolExecutor(max(spreads, default=1))
    senders = {k: SideBySide(k) for k in spreads}  # the node's own publish_threads
    frame_ms: dict[str, list[float]] = {label: [] for label, _, _ in variants}
    faults: dict[str, list[int]] = {label: [] for label, _, _ in variants}
    topic_ms = {label: {name: [] for name in names} for label, _, _ in variants}
    for _ in range(args.frames):
        for index, (label, threads, sides) in enumerate(variants):
            make = rclpy_message if label == "rclpy messages" else message_in_place
            faulted = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
            begun = time.perf_counter()
            header = Header(frame_id=f"v{index}")
            header.stamp.sec, header.stamp.nanosec = divmod(time.monotonic_ns(), 10**9)
            if threads == 1:
                send(0, names, header, make, topic_ms[label])
            elif sides == 1:
                senders[threads].publish([(publishers[0][name], make(name, header, arrays))
                                          for name in names])
            else:
                groups = [[names[i] for i in run] for run in shares(sizes, threads)]
                jobs = [pool.submit(send, i, group, header, make, topic_ms[label])
                        for i, group in enumerate(groups)]
                for job in jobs:
                    job.result()
            frame_ms[label].append((time.perf_counter() - begun) * 1e3)
            faults[label].append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faulted)
            time.sleep(0.05)
    pool.shutdown()
    for sender in senders.values():
        sender.close()
    for node in nodes:
        node.destroy_node()
    for context in contexts:
        rclpy.shutdown(context=context)
    received = json.loads(subscriber.communicate()[0].strip().splitlines()[-1] or "{}")
    print(f"  {'variant':<28} {'publish':>8} {'faults':>7} {'consumer: last':>15} "
          f"{'cloud':>9} {'navigation':>10}")
    for index, (label, _, _) in enumerate(variants):
        last, cloud, navigation = (received.get(kind, {}).get(f"v{index}", [])
                                   for kind in ("last", "points", "navigation"))
        print(f"  {label:<28} {statistics.median(frame_ms[label]):5.2f} ms "
              f"{statistics.median(faults[label]):7.0f} {median_text(last):>15} "
              f"{median_text(cloud):>9} {median_text(navigation):>10} ({len(last)} frames)")
    singles = [label for label, threads, _ in variants if threads == 1]
    print(f"  {'topic':<20} {'MB':>5}  " + "  ".join(f"{label:>20}" for label in singles))
    for name in names:
        print(f"  {name:<20} {arrays[name].nbytes / 1e6:5.2f}  " + "  ".join(
            f"{statistics.median(topic_ms[label][name]):17.2f} ms" for label in singles))
    return 0


if __name__ == "__main__":
    sys.exit(main())
