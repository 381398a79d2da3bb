"""The node's parameters as one table: name, default, meaning, range, and whether it can
change while the node runs. Declared with descriptors so ``ros2 param describe`` explains
them and rclpy enforces the ranges; choices are checked here.
"""

from __future__ import annotations

from dataclasses import dataclass

from rcl_interfaces.msg import (FloatingPointRange, IntegerRange, ParameterDescriptor,
                                ParameterType)
from rclpy.parameter import Parameter

from ..engines import BACKENDS, PRECISIONS
from ..errors import HydraNetError
from ..outputs import OUTPUTS, POINT_COLOR_SOURCES
from ..presets import preset_names
from .qos import RELIABILITY


@dataclass(frozen=True)
class ParamSpec:
    name: str
    default: object
    description: str
    read_only: bool = False
    low: float | None = None
    high: float | None = None
    choices: tuple[str, ...] | None = None


MAX_SIZE = 8192
MAX_METRES = 1000.0

PARAMS: tuple[ParamSpec, ...] = (
    ParamSpec("weights", "kitti", "checkpoint file, or an official preset name (downloaded "
              "into the cache on first use)", read_only=True),
    ParamSpec("preset", "", "class names, colours and depth range; empty: from the weights",
              read_only=True, choices=("",) + tuple(preset_names())),
    ParamSpec("device", "auto", "auto, cpu, cuda or cuda:N", read_only=True),
    ParamSpec("backend", "auto", "inference engine; auto picks the fastest available (torch "
              "on CUDA, else openvino, else onnxruntime, else torch); reference is the "
              "release's exact eager fp32 model", read_only=True, choices=BACKENDS),
    ParamSpec("precision", "auto", "auto: the backend's fastest accuracy-guarded precision "
              "(timed on the first frame, the fastest kept: fp16, bf16 and fp32 on a GPU; bf16 "
              "and fp32 for OpenVINO on a CPU that has bf16)",
              read_only=True, choices=("auto",) + PRECISIONS),
    ParamSpec("calibration_images", "", "precision int8 (openvino): a folder of the camera's "
              "images to calibrate on, or 'synthetic' for held-out synthetic frames; empty: "
              "synthetic for the bundled weights, required for any other", read_only=True),
    ParamSpec("cameras", [], "camera namespaces, e.g. [front, left]: each has <ns>/image and "
              "<ns>/camera_info in and its outputs under <ns>/; frames arriving together run "
              "as one batch. Empty: one camera on 'image' and 'camera_info'", read_only=True),
    ParamSpec("batch_wait", 0.01, "seconds to wait for the other cameras' frames once one "
              "has arrived", read_only=True, low=0.0, high=1.0),
    ParamSpec("pipeline", "auto", "enabled: while the host builds and publishes a frame's "
              "messages, the network already runs the next frame (two stages; outputs stay in "
              "stamp order); auto: enabled for engines that make their outputs on the GPU, "
              "disabled on CPUs, where both stages share the same cores", read_only=True,
              choices=("auto", "enabled", "disabled")),
    ParamSpec("publish_in_place", True, "true: outputs are published serialized in place, from "
              "the memory they were made in (the buffer a GPU engine's came back in, the "
              "arrays a CPU engine's were made in; no copy into rclpy's messages); false: as "
              "rclpy messages", read_only=True),
    ParamSpec("publish_threads", 1, "threads a frame's outputs are sent from when published in "
              "place, in runs of about equal bytes (the navigation inputs "
              "first): the last output goes out sooner, the navigation inputs (mask, "
              "confidence, cloud) a little later; 1: one after another", read_only=True, low=1,
              high=8),
    ParamSpec("image_transport", "raw", "raw: subscribe to 'image'; compressed: to "
              "'image/compressed'", read_only=True, choices=("raw", "compressed")),
    ParamSpec("input_reliability", "best_effort", "QoS reliability of the subscriptions "
              "(best_effort accepts both kinds of publisher)", read_only=True,
              choices=tuple(RELIABILITY)),
    ParamSpec("input_depth", 1, "QoS history depth of the subscriptions", read_only=True,
              low=1, high=100),
    ParamSpec("output_reliability", "reliable", "QoS reliability of the publishers",
              read_only=True, choices=tuple(RELIABILITY)),
    ParamSpec("output_depth", 1, "QoS history depth of the publishers", read_only=True,
              low=1, high=100),
    ParamSpec("diagnostics_period", 1.0, "seconds between /diagnostics reports",
              read_only=True, low=0.1, high=60.0),
    ParamSpec("inference_width", 0, "network input width; 0 with inference_height 0 is the "
              "image's own size, 0 alone keeps the aspect ratio", low=0, high=MAX_SIZE),
    ParamSpec("inference_height", 0, "network input height (see inference_width)",
              low=0, high=MAX_SIZE),
    *(ParamSpec(f"publish_{spec.name}", True, f"publish '{spec.topic}' (computed only while "
                "someone subscribes)") for spec in OUTPUTS),
    ParamSpec("label_info_threshold", 0.0, "'threshold' of segmentation/label_info: the "
              "confidence (0-1) below which consumers should not trust a label; the node "
              "itself publishes every label", low=0.0, high=1.0),
    ParamSpec("overlay_alpha", 0.5, "weight of the class colours in segmentation/overlay",
              low=0.0, high=1.0),
    ParamSpec("max_depth", 0.0, "depth beyond this (m) is published as +Inf (REP 117: "
              "out of range; NaN: no estimate); 0: the preset's range", low=0.0, high=MAX_METRES),
    ParamSpec("pointcloud_stride", 1, "keep every n-th row and column in the point cloud",
              low=1, high=64),
    ParamSpec("pointcloud_max_depth", 0.0, "points beyond this (m) are invalid; 0: max_depth",
              low=0.0, high=MAX_METRES),
    ParamSpec("pointcloud_organized", True, "true: height x width with NaN for invalid "
              "points; false: only valid points, in one row"),
    ParamSpec("pointcloud_color", "image", "colour of the points: the camera image or the "
              "segmentation colours", choices=POINT_COLOR_SOURCES),
    ParamSpec("pointcloud_exclude_classes", [], "class names left out of the point cloud "
              "(e.g. sky)"),
)
PARAM_BY_NAME = {spec.name: spec for spec in PARAMS}


def descriptor(spec: ParamSpec) -> ParameterDescriptor:
    desc = ParameterDescriptor(name=spec.name, description=spec.description,
                               read_only=spec.read_only)
    if spec.choices is not None:
        desc.additional_constraints = "one of: " + ", ".join(repr(c) for c in spec.choices)
    if isinstance(spec.default, list):
        desc.type = ParameterType.PARAMETER_STRING_ARRAY
    elif isinstance(spec.default, bool) or spec.low is None:
        pass
    elif isinstance(spec.default, int):
        desc.integer_range = [IntegerRange(from_value=int(spec.low), to_value=int(spec.high), step=1)]
    else:
        desc.floating_point_range = [FloatingPointRange(from_value=float(spec.low),
                                                        to_value=float(spec.high), step=0.0)]
    return desc


def choice_error(spec: ParamSpec, value: object) -> str | None:
    """Why ``value`` is not acceptable for ``spec`` (ranges aside, rclpy checks them), or None."""
    if spec.choices is None or value in spec.choices:
        return None
    return f"{spec.name} must be one of {', '.join(repr(c) for c in spec.choices)}, got {value!r}"


#: How an empty list may come typed: ros2param makes "[]" a bool array.
EMPTY_ARRAY_TYPES = (Parameter.Type.BOOL_ARRAY, Parameter.Type.INTEGER_ARRAY,
                     Parameter.Type.DOUBLE_ARRAY, Parameter.Type.BYTE_ARRAY)


def as_declared(params: list[Parameter]) -> list[Parameter]:
    """A pre-set-parameters callback: values given the declared type where ``ros2 param set``
    guesses another, an integer for a floating-point parameter (``max_depth 50``) and an
    empty list (``"[]"``, typed a bool array) for a string array; rclpy refused both with
    "Wrong parameter type", and ``pointcloud_exclude_classes`` could not be emptied."""
    def converted(param: Parameter) -> Parameter:
        spec = PARAM_BY_NAME.get(param.name)
        if spec is None:
            return param
        if isinstance(spec.default, float) and param.type_ == Parameter.Type.INTEGER:
            return Parameter(param.name, Parameter.Type.DOUBLE, float(param.value))
        if isinstance(spec.default, list) and param.type_ in EMPTY_ARRAY_TYPES \
                and len(param.value) == 0:
            return Parameter(param.name, Parameter.Type.STRING_ARRAY, [])
        return param
    return [converted(param) for param in params]


def declare_parameters(node, specs: tuple[ParamSpec, ...] = PARAMS) -> None:
    """Declare ``specs`` on ``node`` (overrides from files and the command line apply) and
    refuse values outside their choices with a HydraNetError.

    String arrays are declared by type: an empty default would otherwise be taken for a
    byte array, and an empty list in YAML leaves them unset. Overrides are given the declared
    type first (``as_declared``): ``max_depth: 50`` in a params file, or ``-p
    batch_wait:=0``, stopped the node at start-up with "expecting type 'DOUBLE'", though
    ``ros2 param set`` takes the same value while it runs.
    """
    overrides = getattr(node, "_parameter_overrides", None)  # rclpy's, from files and -p
    if isinstance(overrides, dict):
        for param in as_declared(list(overrides.values())):  # others come back as they were
            overrides[param.name] = param
    for spec in specs:
        if isinstance(spec.default, list):
            node.declare_parameter(spec.name, Parameter.Type.STRING_ARRAY, descriptor(spec))
            if node.get_parameter_or(spec.name).type_ == Parameter.Type.NOT_SET \
                    and not spec.read_only:
                node.set_parameters([Parameter(spec.name, Parameter.Type.STRING_ARRAY,
                                               list(spec.default))])
        else:
            node.declare_parameter(spec.name, spec.default, descriptor(spec))
        problem = choice_error(spec, node.get_parameter_or(spec.name).value)
        if problem:
            raise HydraNetError(f"parameter {problem}")
