"""The launch file, parameter file and RViz config: statically everywhere, and for real where
the ROS 2 launch packages are installed (they are not on PyPI)."""

from __future__ import annotations

import ast
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import yaml

from conftest import REPO
from hydranet_ros.entry_points import NODES
from hydranet_ros.outputs import OUTPUTS
from hydranet_ros.ros.parameters import PARAM_BY_NAME, choice_error

LAUNCH_FILE = REPO / "launch" / "hydranet.launch.py"
REQUIRED_ARGUMENTS = {"image", "camera_info", "namespace", "weights", "preset", "device",
                      "params_file", "publish_pointcloud", "use_rviz", "large_data_transport",
                      "use_sim_time", "log_level"}
LAUNCH_FILES = ["hydranet.launch.py", "demo.launch.py"]


def launch_calls(name: str, path=LAUNCH_FILE) -> list[ast.Call]:
    tree = ast.parse(path.read_text())
    return [n for n in ast.walk(tree) if isinstance(n, ast.Call)
            and getattr(n.func, "id", getattr(n.func, "attr", None)) == name]


def keyword(call: ast.Call, name: str):
    for kw in call.keywords:
        if kw.arg == name:
            return ast.literal_eval(kw.value) if isinstance(kw.value, ast.Constant) else kw.value
    return None


def test_launch_declares_its_arguments():
    declared = {ast.literal_eval(c.args[0]) for c in launch_calls("DeclareLaunchArgument")}
    assert REQUIRED_ARGUMENTS <= declared


@pytest.mark.parametrize("name", LAUNCH_FILES)
def test_every_launch_argument_is_described(name):
    calls = launch_calls("DeclareLaunchArgument", REPO / "launch" / name)
    assert calls
    for call in calls:
        description = keyword(call, "description")
        assert isinstance(description, str) and len(description) > 10, \
            ast.literal_eval(call.args[0])


def test_outputs_are_namespaced_by_default():
    """Not /points and /depth/image in the root namespace, where cameras publish theirs."""
    defaults = {ast.literal_eval(c.args[0]): keyword(c, "default_value")
                for c in launch_calls("DeclareLaunchArgument")}
    assert defaults["namespace"] == "hydranet"


@pytest.mark.parametrize("name, executables", [
    ("hydranet.launch.py", {"hydranet_node", "rviz2"}),
    ("demo.launch.py", {"synthetic_camera", "hydranet_node", "hydranet_evaluator", "rviz2"}),
])
def test_launch_starts_executables_the_package_installs(name, executables):
    path = REPO / "launch" / name
    source = path.read_text()
    assert 'PACKAGE = "hydranet_ros"' in source
    assert {keyword(n, "executable") for n in launch_calls("Node", path)} == executables
    setup = (REPO / "setup.py").read_text()
    for exe in executables - {"rviz2"}:
        assert f'"{exe} = hydranet_ros.entry_points:{exe}"' in setup, exe
        assert NODES[exe].startswith("hydranet_ros.ros."), exe
    for config in ("hydranet.yaml", "hydranet.rviz"):
        assert config in source and (REPO / "config" / config).is_file()


def test_parameter_file_is_complete_and_valid():
    document = yaml.safe_load((REPO / "config" / "hydranet.yaml").read_text())
    params = document["/**"]["ros__parameters"]
    assert set(params) == set(PARAM_BY_NAME), "every parameter, and only those, in the file"
    for name, value in params.items():
        spec = PARAM_BY_NAME[name]
        assert type(value) is type(spec.default), name
        assert choice_error(spec, value) is None
        if spec.low is not None:
            assert spec.low <= value <= spec.high, name
        assert value == spec.default, f"{name}: the file and the code disagree on the default"


def test_rviz_config_shows_the_outputs():
    document = yaml.safe_load((REPO / "config" / "hydranet.rviz").read_text())
    displays = {d["Topic"]["Value"]: d for d in document["Visualization Manager"]["Displays"]}
    assert {"image", "segmentation/overlay", "depth/color", "normals/color", "points"} <= set(displays)
    assert displays["points"]["Class"] == "rviz_default_plugins/PointCloud2"
    assert displays["points"]["Color Transformer"] == "RGB8"
    topics = {spec.topic for spec in OUTPUTS}
    assert set(displays) - {"image"} <= topics


LAUNCHER = textwrap.dedent("""
    import sys
    from launch import LaunchDescription, LaunchService
    from launch.actions import IncludeLaunchDescription
    from launch.launch_description_sources import PythonLaunchDescriptionSource
    path, *pairs = sys.argv[1:]
    arguments = dict(pair.split(":=", 1) for pair in pairs)
    service = LaunchService()
    service.include_launch_description(LaunchDescription([IncludeLaunchDescription(
        PythonLaunchDescriptionSource(path), launch_arguments=arguments.items())]))
    sys.exit(service.run())
""")


def launch(colcon_install: Path, tmp_path: Path, name: str, args: list[str]) -> subprocess.Popen:
    """``ros2 launch hydranet_ros NAME ARGS`` from the colcon install, in its own process
    group, its output in tmp_path/launch.log."""
    launch_file = colcon_install / "share" / "hydranet_ros" / "launch" / name
    site = next((colcon_install / "lib").glob("python3*/site-packages"))
    env = {**os.environ, "ROS_LOG_DIR": str(tmp_path / "ros_log"),
           "AMENT_PREFIX_PATH": os.pathsep.join(filter(None, [
               str(colcon_install), os.environ.get("AMENT_PREFIX_PATH", "")])),
           "PYTHONPATH": os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH", "")]))}
    with open(tmp_path / "launch.log", "w") as log:
        return subprocess.Popen([sys.executable, "-c", LAUNCHER, str(launch_file), *args],
                                env=env, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)


def stop_launch(proc: subprocess.Popen, timeout: float) -> int:
    """Ctrl-C to the whole launch, as a terminal would; killed if it does not exit in time."""
    os.killpg(proc.pid, signal.SIGINT)
    try:
        return proc.wait(timeout)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)


def node_parameter(node, target: str, name: str):
    """A parameter's value as the running node ``target`` has it."""
    import rclpy
    from rcl_interfaces.srv import GetParameters

    client = node.create_client(GetParameters, f"{target}/get_parameters")
    assert client.wait_for_service(timeout_sec=20), target
    future = client.call_async(GetParameters.Request(names=[name]))
    rclpy.spin_until_future_complete(node, future, timeout_sec=20)
    (value,) = future.result().values
    return {1: value.bool_value, 2: value.integer_value, 3: value.double_value,
            4: value.string_value}.get(value.type)


def assert_clean_stop(proc: subprocess.Popen, code: int, log: str, nodes: int) -> None:
    """Ctrl-C ended every node: exit status 0, each node 'finished cleanly', no traceback,
    no error, and nothing left running in the launch's process group."""
    assert code == 0, log
    for bad in ("Traceback", "KeyboardInterrupt", "process has died", "[ERROR]"):
        assert bad not in log, log
    assert log.count("process has finished cleanly") == nodes, log
    time.sleep(0.5)
    with pytest.raises(ProcessLookupError):
        os.killpg(proc.pid, 0)  # no process of the group is left


def test_launch_file_for_real(ros, colcon_install, make_checkpoint, tmp_path):
    pytest.importorskip("launch_ros", reason="the ROS 2 launch packages (launch, launch_ros) are "
                        "not installed; they come with a ROS 2 install, not from PyPI")
    import numpy as np
    from ros_harness import Probe, camera_info, image_msg

    proc = launch(colcon_install, tmp_path, "hydranet.launch.py", [
        f"weights:={make_checkpoint(6, 2)}", "device:=cpu", "namespace:=/launched",
        "image:=/cam/image_rect", "camera_info:=/cam/camera_info", "publish_pointcloud:=0",
        "use_sim_time:=yes", "log_level:=WARN", "use_rviz:=true"])
    probe = Probe("launch_probe", namespace="/launched", image_topic="/cam/image_rect",
                  info_topic="/cam/camera_info")
    try:
        assert probe.wait_connected(probe.image_pub, timeout=60), (tmp_path / "launch.log").read_text()
        probe.info = camera_info(64, 48)
        rgb = np.random.default_rng(0).integers(0, 256, (48, 64, 3), dtype=np.uint8)
        found = probe.exchange(probe.image_pub, lambda s: image_msg(rgb, "rgb8", s),
                               ["segmentation/labels", "depth/image"])
        assert found, probe.report() + (tmp_path / "launch.log").read_text()
        assert probe.node.count_publishers("/launched/segmentation/labels") == 1
        assert probe.node.count_publishers("/launched/points") == 0  # publish_pointcloud:=0
        assert node_parameter(probe.node, "/launched/hydranet", "use_sim_time") is True
    finally:
        probe.destroy()
        code = stop_launch(proc, 15)
    log = (tmp_path / "launch.log").read_text()
    if not _installed("rviz2"):
        assert "rviz2 is not installed: starting without it" in log
    assert "HydraNet ready" not in log  # log_level:=WARN: the node's INFO lines are left out
    assert_clean_stop(proc, code, log, nodes=2 if _installed("rviz2") else 1)


def test_demo_launch_file_for_real(ros, colcon_install, tmp_path):
    """demo.launch.py brings up camera, node and evaluator, which scores frames live."""
    pytest.importorskip("launch_ros", reason="the ROS 2 launch packages (launch, launch_ros) are "
                        "not installed; they come with a ROS 2 install, not from PyPI")
    import json

    from rclpy.node import Node
    from std_msgs.msg import String

    # use_rviz is true by default: without rviz2 the demo runs without it
    proc = launch(colcon_install, tmp_path, "demo.launch.py",
                  ["namespace:=launched_demo", "rate:=2"])  # an integer: the camera takes a double
    node = Node("demo_launch_probe")
    summaries = []
    node.create_subscription(String, "/launched_demo/evaluation/summary",
                             lambda m: summaries.append(json.loads(m.data)), 10)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not (summaries and summaries[-1]["frames"] >= 3):
            ros.spin_once(node, timeout_sec=0.2)
        assert summaries and summaries[-1]["frames"] >= 3, (tmp_path / "launch.log").read_text()
        assert summaries[-1]["miou"] > 0.5
    finally:
        node.destroy_node()
        code = stop_launch(proc, 20)
    log = (tmp_path / "launch.log").read_text()
    assert "HydraNet ready" in log  # the node's INFO lines at the default level
    assert_clean_stop(proc, code, log, nodes=4 if _installed("rviz2") else 3)


def _installed(package: str) -> bool:
    from ament_index_python.packages import PackageNotFoundError, get_package_prefix
    try:
        get_package_prefix(package)
    except (PackageNotFoundError, OSError):
        return False
    return True
