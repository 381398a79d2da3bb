"""segmentation/label_info on the real wire type: a vision_msgs-compatible interface package
is built here with colcon (vision_msgs is not on PyPI; its LabelInfo and VisionClass are
written in test/interfaces/ from their documented fields), hydranet_node publishes with it,
and a subscriber in another process that joins late still receives the class names."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO, import_or_skip, require

import_or_skip("rclpy", "rclpy is not installed (pip install -e .[ros])")

from ros_harness import NodeProcess  # noqa: E402

from hydranet_ros.presets import get_preset  # noqa: E402

INTERFACES = REPO / "test" / "interfaces" / "vision_msgs"

LATE_SUBSCRIBER = """
import json, sys, time
import rclpy
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from vision_msgs.msg import LabelInfo
rclpy.init()
node = rclpy.create_node("late_label_info_subscriber")
got = []
# the QoS of Nav2's semantic segmentation layer for its labels topic
qos = QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE,
                 durability=DurabilityPolicy.TRANSIENT_LOCAL)
node.create_subscription(LabelInfo, sys.argv[1], got.append, qos)
deadline = time.monotonic() + 30
while not got and time.monotonic() < deadline:
    rclpy.spin_once(node, timeout_sec=0.1)
if got:
    msg = got[0]
    print(json.dumps({"classes": [[c.class_id, c.class_name] for c in msg.class_map],
                      "threshold": msg.threshold, "stamp": msg.header.stamp.sec}))
node.destroy_node()
rclpy.shutdown()
"""


@pytest.fixture(scope="session")
def vision_msgs_env(tmp_path_factory) -> dict:
    """The environment in which the built vision_msgs is importable."""
    colcon = Path(sys.executable).with_name("colcon")
    share = Path(sys.prefix) / "share"
    missing = [what for what, there in [
        ("colcon", colcon.is_file()), ("cmake", shutil.which("cmake") is not None),
        ("ament_cmake", (share / "ament_cmake" / "cmake").is_dir()),
        ("rosidl_default_generators", (share / "rosidl_default_generators").is_dir())]
        if not there]
    if missing:
        require(f"building vision_msgs needs {', '.join(missing)} "
                "(pip install -e .[test]; cmake and a C compiler from the system)")
    ws = tmp_path_factory.mktemp("interfaces_ws")
    shutil.copytree(INTERFACES, ws / "src" / "vision_msgs")
    env = {**os.environ, "AMENT_PREFIX_PATH": sys.prefix,
           "PATH": os.pathsep.join([str(colcon.parent), os.environ.get("PATH", "")])}
    done = subprocess.run([str(colcon), "build", "--base-paths", "src"], cwd=ws, env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    install = ws / "install" / "vision_msgs"
    site = next((install / "lib").glob("python3*/site-packages"))
    return {"PYTHONPATH": os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH")])),
            "LD_LIBRARY_PATH": os.pathsep.join(filter(None, [str(install / "lib"),
                                                             os.environ.get("LD_LIBRARY_PATH")]))}


def test_a_late_subscriber_in_another_process_gets_the_class_names(ros, vision_msgs_env,
                                                                  tmp_path):
    weights = "synthetic"
    node = NodeProcess(tmp_path / "node.log", {"weights": weights, "device": "cpu",
                                               "label_info_threshold": 0.25},
                       namespace="/label_info", env=vision_msgs_env)
    try:
        assert node.wait_for_log("subscribed to", timeout=60), node.log()
        assert "vision_msgs is not installed" not in node.log()
        # the node published once at start-up; this subscriber comes afterwards
        late = subprocess.run([sys.executable, "-c", LATE_SUBSCRIBER,
                               "/label_info/segmentation/label_info"],
                              env={**os.environ, **vision_msgs_env}, capture_output=True,
                              text=True, timeout=60)
    finally:
        code, _ = node.stop()
    assert late.returncode == 0, late.stderr
    assert late.stdout.strip(), "no LabelInfo reached the late subscriber\n" + node.log()
    got = json.loads(late.stdout)
    names = get_preset(weights).class_names
    assert got["classes"] == [[i, name] for i, name in enumerate(names)]
    assert got["threshold"] == pytest.approx(0.25)
    assert got["stamp"] > 0
    assert code == 0
