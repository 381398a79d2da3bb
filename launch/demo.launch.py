"""The demo with RViz: a synthetic camera, hydranet_node with the bundled synthetic weights,
and the evaluator scoring it live against the camera's ground truth.

    ros2 launch hydranet_ros demo.launch.py [rate:=3.0] [held_out:=true] [use_rviz:=true]

Everything runs in the namespace ``hydranet_demo``. RViz starts only where it is installed;
if any of the three nodes exits, the launch ends with it.
"""

import os

from ament_index_python.packages import PackageNotFoundError, get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, EmitEvent, LogInfo, OpaqueFunction
from launch.events import Shutdown
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from hydranet_ros.ros.launch_arguments import number, switch

PACKAGE = "hydranet_ros"
DDS_PROFILE_SWITCH = "HYDRANET_DDS_PROFILE"


def _nodes(context):
    share = get_package_share_directory(PACKAGE)
    namespace = LaunchConfiguration("namespace")
    env = {} if switch(context, "large_data_transport") else {DDS_PROFILE_SWITCH: "off"}

    def ending(name):
        return [EmitEvent(event=Shutdown(reason=f"{name} exited"))]
    nodes = [
        Node(package=PACKAGE, executable="synthetic_camera", name="synthetic_camera",
             namespace=namespace, output="screen", additional_env=env,
             parameters=[{"rate": number(context, "rate"),
                          "held_out": switch(context, "held_out")}],
             on_exit=ending("synthetic_camera")),
        Node(package=PACKAGE, executable="hydranet_node", name="hydranet", namespace=namespace,
             output="screen", additional_env=env,
             parameters=[os.path.join(share, "config", "hydranet.yaml"),
                         {"weights": LaunchConfiguration("weights")}],
             on_exit=ending("hydranet_node")),
        Node(package=PACKAGE, executable="hydranet_evaluator", name="hydranet_evaluator",
             namespace=namespace, output="screen", on_exit=ending("hydranet_evaluator")),
    ]
    if not switch(context, "use_rviz"):
        return nodes
    try:
        get_package_share_directory("rviz2")
    except PackageNotFoundError:
        return nodes + [LogInfo(msg="use_rviz is true, but rviz2 is not installed: running "
                                    "the demo without it (install ros-$ROS_DISTRO-rviz2, or "
                                    "pass use_rviz:=false)")]
    return nodes + [Node(
        package="rviz2", executable="rviz2", name="hydranet_rviz", namespace=namespace,
        arguments=["-d", os.path.join(share, "config", "hydranet.rviz"),
                   "-f", "camera_optical_frame"], output="screen")]


def generate_launch_description():
    return LaunchDescription([
        DeclareLaunchArgument("namespace", default_value="hydranet_demo",
                              description="namespace of the three nodes and their topics"),
        DeclareLaunchArgument("rate", default_value="3.0",
                              description="camera frames per second"),
        DeclareLaunchArgument("held_out", default_value="true",
                              description="show streets that training never saw"),
        DeclareLaunchArgument("weights", default_value="synthetic",
                              description="checkpoint file or preset name for hydranet_node "
                                          "(the bundled 'synthetic' weights match the camera)"),
        DeclareLaunchArgument("large_data_transport", default_value="true",
                              description="give the camera and the node Fast DDS's large-data "
                                          "profile; false keeps Fast DDS's defaults"),
        DeclareLaunchArgument("use_rviz", default_value="true",
                              description="start RViz with the package's view (where rviz2 "
                                          "is installed)"),
        OpaqueFunction(function=_nodes),
    ])
