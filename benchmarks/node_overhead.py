"""The node's own cost per frame, everything except the network: message conversion,
post-processing, the navigation inputs (labels, confidence, point cloud), then building and
publishing the messages while the colour views are made on the worker threads.

    .venv/bin/python benchmarks/node_overhead.py [--width 640 --height 480 --repeat 30]
                                                 [--subscriber same|other] [--in-place true]

Runs the same functions the node runs, on one 640x480 frame with every output on, for the
6-class/2-task (KITTI) and 40-class/3-task (NYUD) heads, and prints the median per stage
and when, from the decoding on, the point cloud (the last navigation output) had been
published.
Every output has a subscriber: in this process (``same``, the default), or in a child
process (``other``, as a navigation node is; publishing then copies into shared memory).
The messages are made and published as the node's ``publish_in_place`` makes them: serialized
in place (``true``, the default) or as rclpy messages (``false``).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import threading
import time

import numpy as np
import torch

os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")

import rclpy  # noqa: E402
from rclpy.node import Node  # noqa: E402
from rclpy.utilities import get_rmw_implementation_identifier  # noqa: E402
from sensor_msgs.msg import Image, PointCloud2  # noqa: E402

from hydranet_ros.engines import build_engine  # noqa: E402
from hydranet_ros.geometry import Intrinsics  # noqa: E402
from hydranet_ros.model import HydraNet  # noqa: E402
from hydranet_ros.outputs import (OUTPUT_BY_NAME, OUTPUTS, OutputSettings,  # noqa: E402
                                  parts_needed, start_outputs)
from hydranet_ros.postprocess import postprocess  # noqa: E402
from hydranet_ros.memory import keep_freed_memory  # noqa: E402
from hydranet_ros.presets import get_preset  # noqa: E402
from hydranet_ros.ros.conversions import frame_message_stream, image_to_rgb  # noqa: E402
from hydranet_ros.ros.serialized import message_in_place, publish  # noqa: E402
from hydranet_ros.ros.transport import configure_large_data  # noqa: E402

STAGES = ("decode", "postprocess", "outputs", "publish")


def frame_message(width: int, height: int) -> Image:
    rng = np.random.default_rng(0)
    msg = Image(height=height, width=width, encoding="bgr8", step=width * 3)
    msg.data = rng.integers(0, 256, (height, width, 3), dtype=np.uint8).tobytes()
    msg.header.frame_id = "camera_optical_frame"
    return msg


def listen(topics: list[str]) -> None:
    """The child of ``--subscriber other``: every topic subscribed (taken serialised), until
    its standard input closes."""
    rclpy.init()
    node = Node("hydranet_overhead_listener")
    for topic in topics:
        node.create_subscription(PointCloud2 if topic.endswith("points") else Image, topic,
                                 lambda m: None, 1, raw=True)
    closed = threading.Event()
    threading.Thread(target=lambda: (sys.stdin.read(), closed.set()), daemon=True).start()
    while not closed.is_set():
        rclpy.spin_once(node, timeout_sec=0.05)
    node.destroy_node()
    rclpy.try_shutdown()


def measure(preset_name: str, width: int, height: int, repeat: int, node: Node,
            subscriber: str, in_place: bool) -> tuple[dict[str, float], float]:
    """Median ms per stage, and the median ms from decoding to the point cloud published."""
    preset = get_preset(preset_name)
    torch.manual_seed(0)
    engine = build_engine(HydraNet(preset.num_classes, preset.num_tasks).eval(), preset,
                          "reference", torch.device("cpu"))
    msg = frame_message(width, height)
    # the network: not part of the overhead
    raw = tuple(out[0] for out in engine.infer(image_to_rgb(msg)[None]))
    intr = Intrinsics(500.0, 500.0, width / 2, height / 2, width, height)
    wanted = {spec.name for spec in OUTPUTS
              if preset.num_tasks == 3 or "normals" not in spec.needs}
    publishers = {name: node.create_publisher(PointCloud2 if name == "points" else Image,
                                              f"bench/{name}", 1) for name in wanted}
    topics = [f"bench/{name}" for name in wanted]
    by_topic = {OUTPUT_BY_NAME[name].topic: pub for name, pub in publishers.items()}
    subscriptions, child = [], None
    if subscriber == "same":
        subscriptions = [node.create_subscription(PointCloud2 if t.endswith("points") else Image,
                                                  t, lambda m: None, 1) for t in topics]
    else:
        child = subprocess.Popen([sys.executable, __file__, "--listen", ",".join(topics)],
                                 stdin=subprocess.PIPE)
    while not all(p.get_subscription_count() > 0 for p in publishers.values()):
        time.sleep(0.05)
    settings = OutputSettings(max_depth=1e6)
    times: dict[str, list[float]] = {stage: [] for stage in STAGES}
    navigation: list[float] = []
    for i in range(repeat + 3):
        t0 = time.perf_counter()
        rgb = image_to_rgb(msg)
        t1 = time.perf_counter()
        pred = postprocess(raw, (height, width), parts_needed(wanted))
        t2 = time.perf_counter()
        arrays = start_outputs(rgb, pred, preset, settings, wanted, intr)
        t3 = time.perf_counter()
        for topic, out in frame_message_stream(arrays, msg.header, None,
                                               make=message_in_place if in_place else None):
            publish(by_topic[topic], out)
            if topic == "points":
                cloud_out = time.perf_counter()
        t4 = time.perf_counter()
        if i >= 3:  # warm-up
            for stage, seconds in zip(STAGES, (t1 - t0, t2 - t1, t3 - t2, t4 - t3)):
                times[stage].append(seconds)
            navigation.append(cloud_out - t0)
        rclpy.spin_once(node, timeout_sec=0)
    for sub in subscriptions:
        node.destroy_subscription(sub)
    if child is not None:
        child.stdin.close()
        child.wait()
    for pub in publishers.values():
        node.destroy_publisher(pub)
    result = {stage: statistics.median(values) * 1e3 for stage, values in times.items()}
    return result, statistics.median(navigation) * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument("--subscriber", choices=("same", "other"), default="same",
                        help="where the outputs' subscriber is: this process or a child")
    parser.add_argument("--in-place", choices=("true", "false"), default="true",
                        help="messages serialized in place (publish_in_place) or rclpy's")
    parser.add_argument("--listen", help=argparse.SUPPRESS)  # the child of --subscriber other
    args = parser.parse_args()
    if args.listen:
        listen(args.listen.split(","))
        return
    keep_freed_memory()  # as hydranet_node does
    rclpy.init()
    configure_large_data(get_rmw_implementation_identifier())  # as the node
    node = Node("hydranet_overhead_benchmark")
    print(f"node overhead per frame at {args.width}x{args.height}, all outputs on, median of "
          f"{args.repeat} frames (ms), subscriber in {'this' if args.subscriber == 'same' else 'another'} "
          f"process, messages {'serialized in place' if args.in_place == 'true' else 'rclpy'}; "
          f"{platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} CPUs, torch {torch.__version__}")
    print(f"{'model':28s}" + "".join(f"{s:>12s}" for s in STAGES) + f"{'total':>10s}"
          + f"{'cloud out':>11s}")
    for name, label in (("kitti", "6 classes, 2 tasks (kitti)"),
                        ("nyud_three", "40 classes, 3 tasks (nyud)")):
        result, cloud_out = measure(name, args.width, args.height, args.repeat, node,
                                    args.subscriber, args.in_place == "true")
        print(f"{label:28s}" + "".join(f"{result[s]:12.1f}" for s in STAGES)
              + f"{sum(result.values()):10.1f}{cloud_out:11.1f}")
    node.destroy_node()
    rclpy.shutdown()


if __name__ == "__main__":
    main()
