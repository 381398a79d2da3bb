"""The demo with RViz: a synthetic camera, hydranet_node with the bundled synthetic weights,
and the evaluator scoring it live against the camera's ground truth.

    ros2 launch hydranet_ros demo.launch.py [rate:=3.0] [held_out:=true] [use_rviz:=true]
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

PACKAGE = "hydranet_ros"


def generate_launch_description():
    share = get_package_share_directory(PACKAGE)
    namespace = LaunchConfiguration("namespace")
    return LaunchDescription([
        DeclareLaunchArgument("namespace", default_value="hydranet_demo"),
        DeclareLaunchArgument("rate", default_value="3.0", description="camera frames per second"),
        DeclareLaunchArgument("held_out", default_value="true",
                              description="show streets that training never saw"),
        DeclareLaunchArgument("weights", default_value="synthetic"),
        DeclareLaunchArgument("use_rviz", default_value="true"),
        Node(package=PACKAGE, executable="synthetic_camera", name="synthetic_camera",
             namespace=namespace, output="screen",
             parameters=[{"rate": LaunchConfiguration("rate"),
                          "held_out": LaunchConfiguration("held_out")}]),
        Node(package=PACKAGE, executable="hydranet_node", name="hydranet", namespace=namespace,
             output="screen",
             parameters=[os.path.join(share, "config", "hydranet.yaml"),
                         {"weights": LaunchConfiguration("weights")}]),
        Node(package=PACKAGE, executable="hydranet_evaluator", name="hydranet_evaluator",
             namespace=namespace, output="screen"),
        Node(package="rviz2", executable="rviz2", name="hydranet_rviz", namespace=namespace,
             arguments=["-d", os.path.join(share, "config", "hydranet.rviz"),
                        "-f", "camera_optical_frame"],
             condition=IfCondition(LaunchConfiguration("use_rviz"))),
    ])
