"""The node's outputs as inputs of a navigation stack: parameters of Nav2's semantic
segmentation costmap layer (kiwicampus/semantic_segmentation_layer) for a preset.

The layer takes exactly what hydranet_node publishes: a mono8 class-id mask, an optional
mono8 confidence, the organized point cloud (pixel-aligned with the mask, same stamp) and a
vision_msgs/LabelInfo naming the ids. It must know every class the LabelInfo names, each in
a "class type" with its costs; the groups and their costs are data in ``presets.json``
(``navigation_groups``, and each class's ``navigation``), so that one place says that a road
is traversable and a car is not.
"""

from __future__ import annotations

import yaml

from .presets import Preset, navigation_groups

PLUGIN = "semantic_segmentation_layer::SemanticSegmentationLayer"
LAYER = "semantic_segmentation_layer"
SOURCE = "hydranet"
#: The source's settings besides the topics and classes (the layer's names and meanings).
SOURCE_SETTINGS = {
    "observation_persistence": 0.0,
    "expected_update_rate": 0.0,
    "max_obstacle_distance": 5.0,
    "min_obstacle_distance": 0.3,
    "tile_map_decay_time": 2.0,
    "visualize_tile_map": False,
    # a tile seen as several classes takes the most costly one, so an obstacle is never
    # cleared by a confident view of the floor beside it
    "use_cost_selection": True,
}


def class_types(preset: Preset) -> dict[str, dict]:
    """Group -> its classes and costs, for the groups this preset's classes fall in."""
    groups = navigation_groups()
    used = [group for group in groups if group in preset.navigation]
    return {group: {"classes": [name for name, g in zip(preset.class_names, preset.navigation)
                                if g == group], **groups[group]} for group in used}


def layer_parameters(preset: Preset, namespace: str = "/hydranet") -> dict:
    """The layer's parameters, fed by hydranet_node in ``namespace``."""
    ns = "/" + namespace.strip("/") if namespace.strip("/") else ""
    types = class_types(preset)
    return {
        "plugin": PLUGIN,
        "enabled": True,
        "combination_method": 1,  # max with the layers below
        # the node stamps mask, confidence and cloud of a frame with the camera's stamp
        "use_approximate_time_sync": False,
        "observation_sources": SOURCE,
        SOURCE: {
            "segmentation_topic": f"{ns}/segmentation/labels",
            "confidence_topic": f"{ns}/segmentation/confidence",
            "labels_topic": f"{ns}/segmentation/label_info",
            "pointcloud_topic": f"{ns}/points",
            **SOURCE_SETTINGS,
            "class_types": list(types),
            **types,
        },
    }


def nav2_params_yaml(preset: Preset, namespace: str = "/hydranet") -> str:
    """A Nav2 parameter file fragment: the layer in the local costmap, with comments."""
    overhead = [name for name, g in zip(preset.class_names, preset.navigation) if g == "overhead"]
    costmap = {"local_costmap": {"local_costmap": {"ros__parameters": {
        "plugins": [LAYER, "inflation_layer"],
        LAYER: layer_parameters(preset, namespace)}}}}
    header = [
        f"# Nav2's semantic segmentation costmap layer fed by hydranet_node with the "
        f"'{preset.name}' preset,",
        f"# launched as: ros2 launch hydranet_ros hydranet.launch.py namespace:={namespace.strip('/')}",
        "# Merge into your Nav2 parameters (keep your other costmap plugins in 'plugins').",
        f"# Written by: hydranet-nav2 --preset {preset.name} --namespace {namespace.strip('/')}",
        "# (classes and costs come from hydranet_ros/presets.json: navigation_groups).",
    ]
    if overhead:
        header.append(f"# Keep {', '.join(overhead)} out of the point cloud so it never marks: "
                      f"pointcloud_exclude_classes: {list(overhead)}")
    return "\n".join(header) + "\n" + yaml.safe_dump(costmap, sort_keys=False,
                                                      default_flow_style=None, width=100)
