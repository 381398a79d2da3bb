"""hydranet_ros: HydraNet (joint semantic segmentation, depth and surface normals) for ROS 2.

The top-level package is the ROS-free core; ROS adapters import rclpy only where they live.
"""

__version__ = "0.1.0"
