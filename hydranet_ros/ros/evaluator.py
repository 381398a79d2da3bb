"""``hydranet_evaluator``: scores what hydranet_node publishes against ground truth, live.

Pairs the node's ``segmentation/labels``, ``depth/image`` and ``normals/image`` with
``ground_truth/*`` of the same header stamp, accumulates the project's metrics (mIoU and
per-class IoU, depth AbsRel, RMSE and delta < 1.25, normal angle mean and median), publishes
them as JSON on ``evaluation/summary`` and logs them. With ``frames`` > 0 it stops after that
many frames, writes ``output_json`` and exits. With ``montage_dir`` it saves a picture of
every ``montage_every``-th frame: input | segmentation | depth | normals | ground truth.
"""

from __future__ import annotations

import json
import sys
from collections import OrderedDict
from pathlib import Path

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image
from std_msgs.msg import String

from ..images import write_png
from ..metrics import RunningMetrics, format_summary
from ..presets import get_preset, preset_names
from ..visualize import colorize_depth, colorize_labels, colorize_normals, montage
from .conversions import image_to_array
from .lifecycle import run_node
from .parameters import ParamSpec, declare_parameters

PARAMS = (
    ParamSpec("preset", "synthetic", "class names, colours and depth range",
              read_only=True, choices=tuple(preset_names())),
    ParamSpec("normals", True, "also score normals/image", read_only=True),
    ParamSpec("frames", 0, "exit after scoring this many frames (0: never)", read_only=True,
              low=0, high=10**9),
    ParamSpec("output_json", "", "where to write the final summary (with frames > 0)",
              read_only=True),
    ParamSpec("montage_dir", "", "folder for montage pictures (empty: none)", read_only=True),
    ParamSpec("montage_every", 5, "save every n-th frame's montage", read_only=True,
              low=1, high=10**6),
    ParamSpec("log_every", 10, "log the running metrics every n frames", read_only=True,
              low=1, high=10**6),
)
PREDICTIONS = {"labels": "segmentation/labels", "depth": "depth/image", "normals": "normals/image"}
TRUTHS = {"gt_labels": "ground_truth/labels", "gt_depth": "ground_truth/depth",
          "gt_normals": "ground_truth/normals"}
PENDING_LIMIT = 64  # stamps kept while waiting for their partners
NODE_STATUS_SUFFIX = ": HydraNet"


def _stamp(msg) -> tuple[int, int]:
    return msg.header.stamp.sec, msg.header.stamp.nanosec


class Evaluator(Node):
    def __init__(self, **kwargs) -> None:
        super().__init__("hydranet_evaluator", **kwargs)
        declare_parameters(self, PARAMS)
        value = lambda name: self.get_parameter(name).value  # noqa: E731
        self.preset = get_preset(value("preset"))
        self.metrics = RunningMetrics(self.preset.class_names, self.preset.depth_range[1])
        self.limit, self.output_json = value("frames"), value("output_json")
        self.montage_dir = Path(value("montage_dir")) if value("montage_dir") else None
        self.montage_every, self.log_every = value("montage_every"), value("log_every")
        topics = dict(TRUTHS)
        topics.update(PREDICTIONS if value("normals") else
                      {k: v for k, v in PREDICTIONS.items() if k != "normals"})
        if self.montage_dir is not None:
            self.montage_dir.mkdir(parents=True, exist_ok=True)
            topics["image"] = "image"
        self.required = set(topics)
        self.pending: OrderedDict[tuple[int, int], dict] = OrderedDict()
        qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        for key, topic in topics.items():
            self.create_subscription(Image, topic, lambda m, k=key: self.on_message(k, m), qos)
        self.node_status: dict[str, str] = {}
        self.create_subscription(DiagnosticArray, "/diagnostics", self.on_diagnostics, 10)
        self.summary_pub = self.create_publisher(String, "evaluation/summary", 10)
        self.finished = False
        self.get_logger().info(f"scoring {', '.join(sorted(topics.values()))}")

    def on_diagnostics(self, msg: DiagnosticArray) -> None:
        """Keep the latest report of a hydranet node in this namespace (rates, latency)."""
        prefix = self.get_namespace().rstrip("/") + "/"
        for status in msg.status:
            if status.name.endswith(NODE_STATUS_SUFFIX) and status.name.startswith(prefix):
                values = {kv.key: kv.value for kv in status.values}
                if values.get("inference time p50 (ms)", "nan") != "nan":  # a window with work
                    self.node_status = values

    def on_message(self, key: str, msg: Image) -> None:
        if self.finished:
            return
        stamp = _stamp(msg)
        entry = self.pending.setdefault(stamp, {})
        entry[key] = msg
        if set(entry) >= self.required:
            del self.pending[stamp]
            self.score(entry)
        while len(self.pending) > PENDING_LIMIT:
            self.pending.popitem(last=False)

    def score(self, entry: dict) -> None:
        arrays = {key: image_to_array(msg) for key, msg in entry.items()}
        self.metrics.update(arrays["labels"], arrays["gt_labels"], arrays["depth"],
                            arrays["gt_depth"], arrays.get("normals"), arrays["gt_normals"])
        count = self.metrics.frames
        if self.montage_dir is not None and (count - 1) % self.montage_every == 0:
            self.save_montage(count, arrays)
        summary = self.summary()
        self.summary_pub.publish(String(data=json.dumps(summary)))
        if count % self.log_every == 0 or count == self.limit:
            self.get_logger().info(format_summary(summary))
        if self.limit and count >= self.limit:
            self.finish(summary)

    def save_montage(self, count: int, arrays: dict) -> None:
        """Predictions above, ground truth below, and where the depth is wrong."""
        depth_range = self.preset.depth_range
        top = [("input", arrays["image"]),
               ("segmentation", colorize_labels(arrays["labels"], self.preset)),
               ("depth", colorize_depth(arrays["depth"], depth_range))]
        bottom = [("truth: segmentation", colorize_labels(arrays["gt_labels"], self.preset)),
                  ("truth: depth", colorize_depth(arrays["gt_depth"], depth_range))]
        if "normals" in arrays:
            top.append(("normals", colorize_normals(arrays["normals"])))
            bottom.append(("truth: normals", colorize_normals(np.nan_to_num(arrays["gt_normals"]))))
        with np.errstate(invalid="ignore", divide="ignore"):
            error = np.abs(arrays["depth"] - arrays["gt_depth"]) / arrays["gt_depth"]
        bottom.append(("depth error 0-50 %", colorize_depth(error, (0.0, 0.5))))
        panels = top + bottom[:len(top)]
        write_png(self.montage_dir / f"frame_{count:04d}.png", montage(panels, columns=len(top)))

    def summary(self) -> dict:
        summary = self.metrics.summary()
        summary["node"] = dict(self.node_status)
        return summary

    def finish(self, summary: dict) -> None:
        self.finished = True
        if self.output_json:
            clean = json.loads(json.dumps(summary, default=float),
                               parse_constant=lambda c: None)  # NaN -> null
            Path(self.output_json).write_text(json.dumps(clean, indent=2) + "\n")
        self.get_logger().info(f"scored {summary['frames']} frames: {format_summary(summary)}")


def main(args: list[str] | None = None) -> int:
    return run_node(Evaluator, "hydranet_evaluator", args, done=lambda node: node.finished)


def entry_point() -> None:
    sys.exit(main())



if __name__ == "__main__":
    entry_point()
