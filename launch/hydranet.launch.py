"""Start hydranet_node on a camera, optionally with RViz.

    ros2 launch hydranet_ros hydranet.launch.py image:=/camera/image_raw \
        camera_info:=/camera/camera_info weights:=kitti use_rviz:=true

On a recording played with ``ros2 bag play --clock``, add ``use_sim_time:=true``.

The node and its outputs live in the namespace ``hydranet`` (``/hydranet/segmentation/labels``,
``/hydranet/points``, ...) unless ``namespace:=`` says otherwise. Arguments left empty keep
the value from ``params_file`` (default: the installed config/hydranet.yaml). RViz starts only
where it is installed; if hydranet_node exits (say, its weights cannot be read), the launch
ends with it rather than leaving RViz behind.
"""

import os

from ament_index_python.packages import PackageNotFoundError, get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, EmitEvent, LogInfo, OpaqueFunction
from launch.events import Shutdown
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from hydranet_ros.ros.launch_arguments import log_level, switch

PACKAGE = "hydranet_ros"
#: Launch arguments that, when given, override the parameter of the same meaning.
OVERRIDES = {"weights": "weights", "preset": "preset", "device": "device",
             "backend": "backend", "precision": "precision",
             "calibration_images": "calibration_images",
             "publish_pointcloud": "publish_points", "use_sim_time": "use_sim_time"}
#: Those of them that are switches: given as text, passed on as booleans.
SWITCHES = {"publish_pointcloud", "use_sim_time"}
#: Set to "off" for the node's process when large_data_transport:=false (see transport.py).
DDS_PROFILE_SWITCH = "HYDRANET_DDS_PROFILE"


def _override(context, name):
    return switch(context, name) if name in SWITCHES else \
        LaunchConfiguration(name).perform(context)


def _installed(package):
    try:
        get_package_share_directory(package)
    except PackageNotFoundError:
        return False
    return True


def _hydranet_node(context):
    overrides = {param: _override(context, arg) for arg, param in OVERRIDES.items()
                 if LaunchConfiguration(arg).perform(context)}
    env = {} if switch(context, "large_data_transport") else {DDS_PROFILE_SWITCH: "off"}
    return [Node(
        package=PACKAGE,
        executable="hydranet_node",
        name="hydranet",
        namespace=LaunchConfiguration("namespace"),
        parameters=[LaunchConfiguration("params_file"), overrides],
        remappings=[("image", LaunchConfiguration("image")),
                    ("camera_info", LaunchConfiguration("camera_info"))],
        arguments=["--ros-args", "--log-level", log_level(context)],
        additional_env=env,
        output="screen",
        on_exit=[EmitEvent(event=Shutdown(reason="hydranet_node exited"))],
    )]


def _rviz(context):
    if not switch(context, "use_rviz"):
        return []
    if not _installed("rviz2"):
        return [LogInfo(msg="use_rviz:=true, but rviz2 is not installed: starting without it "
                            "(install ros-$ROS_DISTRO-rviz2)")]
    share = get_package_share_directory(PACKAGE)
    return [Node(
        package="rviz2",
        executable="rviz2",
        name="hydranet_rviz",
        namespace=LaunchConfiguration("namespace"),
        arguments=["-d", os.path.join(share, "config", "hydranet.rviz"),
                   "-f", LaunchConfiguration("fixed_frame")],
        parameters=[{"use_sim_time": switch(context, "use_sim_time")}]
        if LaunchConfiguration("use_sim_time").perform(context) else [],
        remappings=[("image", LaunchConfiguration("image"))],
        output="screen",
    )]


def generate_launch_description():
    share = get_package_share_directory(PACKAGE)
    arguments = [
        DeclareLaunchArgument("image", default_value="image",
                              description="camera image topic (rectified for exact points)"),
        DeclareLaunchArgument("camera_info", default_value="camera_info",
                              description="camera info topic of that image"),
        DeclareLaunchArgument("namespace", default_value="hydranet",
                              description="namespace of the node and its outputs"),
        DeclareLaunchArgument("weights", default_value="",
                              description="checkpoint file or preset name (kitti, nyud, "
                                          "nyud_three, synthetic); empty: from params_file"),
        DeclareLaunchArgument("preset", default_value="",
                              description="class names and colours; empty: from params_file"),
        DeclareLaunchArgument("device", default_value="",
                              description="auto, cpu, cuda or cuda:N; empty: from params_file"),
        DeclareLaunchArgument("backend", default_value="",
                              description="auto, torch, openvino, onnxruntime or reference; "
                                          "empty: from params_file"),
        DeclareLaunchArgument("precision", default_value="",
                              description="auto, fp32, fp16, bf16 or int8 (openvino); empty: "
                                          "from params_file"),
        DeclareLaunchArgument("calibration_images", default_value="",
                              description="int8: a folder of the camera's images to calibrate "
                                          "on; empty: from params_file"),
        DeclareLaunchArgument("params_file",
                              default_value=os.path.join(share, "config", "hydranet.yaml"),
                              description="parameter file of hydranet_node"),
        DeclareLaunchArgument("publish_pointcloud", default_value="",
                              description="true or false; empty: from params_file"),
        DeclareLaunchArgument("large_data_transport", default_value="true",
                              description="give the node Fast DDS's large-data profile "
                                          "(config/fastdds_large_data.xml), so that images and "
                                          "point clouds reach best-effort subscribers on this "
                                          "host; false keeps Fast DDS's defaults"),
        DeclareLaunchArgument("use_sim_time", default_value="",
                              description="true: the nodes take their time from /clock, as "
                                          "on a bag played with 'ros2 bag play --clock' (the "
                                          "outputs keep their images' stamps either way); "
                                          "empty: from params_file"),
        DeclareLaunchArgument("log_level", default_value="info",
                              description="the node's log level: debug, info, warn, error or "
                                          "fatal"),
        DeclareLaunchArgument("use_rviz", default_value="false",
                              description="start RViz with the package's view (where rviz2 "
                                          "is installed)"),
        DeclareLaunchArgument("fixed_frame", default_value="camera_optical_frame",
                              description="RViz fixed frame: the camera's frame_id"),
    ]
    return LaunchDescription(arguments + [OpaqueFunction(function=_hydranet_node),
                                          OpaqueFunction(function=_rviz)])
