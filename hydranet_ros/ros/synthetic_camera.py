"""``synthetic_camera``: a camera driving down synthetic streets, with exact ground truth.

Publishes ``image`` (rgb8) and ``camera_info`` like a camera driver, and with the same
header ``ground_truth/labels`` (mono8 class ids), ``ground_truth/depth`` (32FC1 metres, NaN
for sky) and ``ground_truth/normals`` (32FC3, optical frame, NaN for sky). With
``held_out: true`` it shows the evaluation frames (streets training never sees).
"""

from __future__ import annotations

import sys

from rclpy.node import Node
from sensor_msgs.msg import CameraInfo, Image

from ..evaluation import held_out_frame
from ..geometry import Intrinsics
from ..synthetic.render import SyntheticWorld
from ..synthetic.scene import frames_per_street
from .conversions import image_message
from .lifecycle import run_node
from .parameters import ParamSpec, declare_parameters
from .qos import profile, publisher_events

PARAMS = (
    ParamSpec("width", 320, "image width", read_only=True, low=16, high=4096),
    ParamSpec("height", 240, "image height", read_only=True, low=16, high=4096),
    ParamSpec("hfov_deg", 80.0, "horizontal field of view", read_only=True, low=10.0, high=150.0),
    ParamSpec("rate", 10.0, "frames per second", read_only=True, low=0.1, high=1000.0),
    ParamSpec("seed", 0, "street to drive down (next streets follow)", read_only=True,
              low=0, high=2**31 - 1),
    ParamSpec("held_out", False, "show the held-out evaluation frames instead", read_only=True),
    ParamSpec("held_out_step", 1, "with held_out: show every n-th held-out frame (25 per "
              "street; a step of 8 visits a new street every few frames)", read_only=True,
              low=1, high=1000),
    ParamSpec("frames", 0, "stop publishing after this many frames (0: never)",
              read_only=True, low=0, high=10**9),
    ParamSpec("still", False, "render one frame and publish it again and again with new "
              "stamps: input rates beyond the renderer's (about 7 Hz at 640x480 on 2 cores), "
              "for rate tests", read_only=True),
    ParamSpec("ground_truth", True, "also publish ground_truth/labels, depth and normals",
              read_only=True),
    ParamSpec("frame_id", "camera_optical_frame", "frame_id of every header", read_only=True),
    ParamSpec("wait_for_subscriber", False, "publish nothing until the image has a subscriber "
              "(benchmarks: no frame goes out before the node has discovered the camera)",
              read_only=True),
    ParamSpec("reliability", "reliable", "QoS reliability of the publishers", read_only=True,
              choices=("reliable", "best_effort")),
    ParamSpec("depth", 5, "QoS history depth of the publishers (room for retransmitting large "
              "frames to a reliable subscriber)", read_only=True, low=1, high=100),
)
TOPICS = {"image": Image, "camera_info": CameraInfo, "ground_truth/labels": Image,
          "ground_truth/depth": Image, "ground_truth/normals": Image}


def camera_info_message(header, intr: Intrinsics) -> CameraInfo:
    """A rectified pinhole CameraInfo: no distortion, P = [K | 0]."""
    k = [intr.fx, 0.0, intr.cx, 0.0, intr.fy, intr.cy, 0.0, 0.0, 1.0]
    return CameraInfo(header=header, width=intr.width, height=intr.height,
                      distortion_model="plumb_bob", d=[0.0] * 5, k=k,
                      r=[1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0],
                      p=[intr.fx, 0.0, intr.cx, 0.0, 0.0, intr.fy, intr.cy, 0.0, 0.0, 0.0, 1.0, 0.0])


class SyntheticCamera(Node):
    def __init__(self, **kwargs) -> None:
        super().__init__("synthetic_camera", **kwargs)
        declare_parameters(self, PARAMS)
        value = lambda name: self.get_parameter(name).value  # noqa: E731
        self.world = SyntheticWorld(value("width"), value("height"), value("hfov_deg"))
        self.held_out, self.seed = value("held_out"), value("seed")
        self.held_out_step = value("held_out_step")
        self.limit, self.frame_id = value("frames"), value("frame_id")
        self.still, self.ground_truth = value("still"), value("ground_truth")
        self.wait_for_subscriber = value("wait_for_subscriber")
        self._still_frame = None
        reliability = value("reliability")
        qos = profile(reliability, value("depth"))
        self.pubs = {topic: self.create_publisher(
            msg_type, topic, qos, event_callbacks=publisher_events(
                self.get_logger(), self.resolve_topic_name(topic), reliability))
            for topic, msg_type in TOPICS.items()}
        self.count = 0
        self.timer = self.create_timer(1.0 / value("rate"), self.publish_frame)
        what = "held-out frames" if self.held_out else f"street {self.seed}"
        self.get_logger().info(f"publishing {what} at {value('width')}x{value('height')}, "
                               f"{value('rate')} Hz")

    def frame(self, k: int):
        if self.still:
            if self._still_frame is None:
                self._still_frame = self._render(0)
            return self._still_frame
        return self._render(k)

    def _render(self, k: int):
        if self.held_out:
            return held_out_frame(self.world, k * self.held_out_step)
        per_street = frames_per_street()
        return self.world.frame(self.seed + k // per_street, k % per_street)

    def publish_frame(self) -> None:
        if self.wait_for_subscriber and self.pubs["image"].get_subscription_count() == 0:
            return
        if self.limit and self.count >= self.limit:
            self.timer.cancel()
            self.get_logger().info(f"published {self.count} frames, done")
            return
        frame = self.frame(self.count)
        header = Image().header
        header.stamp = self.get_clock().now().to_msg()
        header.frame_id = self.frame_id
        messages = {"camera_info": camera_info_message(header, frame.intrinsics)}
        if self.ground_truth:
            messages.update({"ground_truth/labels": image_message(header, frame.labels),
                             "ground_truth/depth": image_message(header, frame.depth),
                             "ground_truth/normals": image_message(header, frame.normals)})
        messages["image"] = image_message(header, frame.rgb)  # the image last: it triggers work
        for topic, msg in messages.items():
            self.pubs[topic].publish(msg)
        self.count += 1


def main(args: list[str] | None = None) -> int:
    return run_node(SyntheticCamera, "synthetic_camera", args, large_data=True)


def entry_point() -> None:
    sys.exit(main())



if __name__ == "__main__":
    entry_point()
