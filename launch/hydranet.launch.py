"""Start hydranet_node on a camera, optionally with RViz.

    ros2 launch hydranet_ros hydranet.launch.py image:=/camera/image_raw \
        camera_info:=/camera/camera_info weights:=kitti use_rviz:=true

Arguments left empty keep the value from ``params_file`` (default: the installed
config/hydranet.yaml).
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

PACKAGE = "hydranet_ros"
#: Launch arguments that, when given, override the parameter of the same meaning.
OVERRIDES = {"weights": "weights", "preset": "preset", "device": "device",
             "backend": "backend", "precision": "precision",
             "publish_pointcloud": "publish_points"}


def _parameter_value(text):
    lowered = text.lower()
    return lowered == "true" if lowered in ("true", "false") else text


def _hydranet_node(context):
    overrides = {param: _parameter_value(LaunchConfiguration(arg).perform(context))
                 for arg, param in OVERRIDES.items()
                 if LaunchConfiguration(arg).perform(context)}
    return [Node(
        package=PACKAGE,
        executable="hydranet_node",
        name="hydranet",
        namespace=LaunchConfiguration("namespace"),
        parameters=[LaunchConfiguration("params_file"), overrides],
        remappings=[("image", LaunchConfiguration("image")),
                    ("camera_info", LaunchConfiguration("camera_info"))],
        output="screen",
    )]


def generate_launch_description():
    share = get_package_share_directory(PACKAGE)
    arguments = [
        DeclareLaunchArgument("image", default_value="image",
                              description="camera image topic (rectified for exact points)"),
        DeclareLaunchArgument("camera_info", default_value="camera_info",
                              description="camera info topic of that image"),
        DeclareLaunchArgument("namespace", default_value="",
                              description="namespace of the node and its outputs"),
        DeclareLaunchArgument("weights", default_value="",
                              description="checkpoint file or preset name (kitti, nyud, "
                                          "nyud_three); empty: from params_file"),
        DeclareLaunchArgument("preset", default_value="",
                              description="class names and colours; empty: from params_file"),
        DeclareLaunchArgument("device", default_value="",
                              description="auto, cpu, cuda or cuda:N; empty: from params_file"),
        DeclareLaunchArgument("backend", default_value="",
                              description="auto, torch, openvino, onnxruntime or reference; "
                                          "empty: from params_file"),
        DeclareLaunchArgument("precision", default_value="",
                              description="auto, fp32, fp16 or bf16; empty: from params_file"),
        DeclareLaunchArgument("params_file",
                              default_value=os.path.join(share, "config", "hydranet.yaml"),
                              description="parameter file of hydranet_node"),
        DeclareLaunchArgument("publish_pointcloud", default_value="",
                              description="true/false; empty: from params_file"),
        DeclareLaunchArgument("use_rviz", default_value="false", description="start RViz"),
        DeclareLaunchArgument("fixed_frame", default_value="camera_optical_frame",
                              description="RViz fixed frame: the camera's frame_id"),
    ]
    rviz = Node(
        package="rviz2",
        executable="rviz2",
        name="hydranet_rviz",
        namespace=LaunchConfiguration("namespace"),
        arguments=["-d", os.path.join(share, "config", "hydranet.rviz"),
                   "-f", LaunchConfiguration("fixed_frame")],
        remappings=[("image", LaunchConfiguration("image"))],
        condition=IfCondition(LaunchConfiguration("use_rviz")),
    )
    return LaunchDescription(arguments + [OpaqueFunction(function=_hydranet_node), rviz])
