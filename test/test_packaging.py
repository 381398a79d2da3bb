"""The ROS-native build path: package.xml, and a real colcon build installing where ROS looks."""

from __future__ import annotations

import os
import subprocess
import xml.etree.ElementTree as ET

from conftest import REPO

EXECUTABLES = ["hydranet-infer", "hydranet-weights", "hydranet_node"]


def test_package_xml():
    root = ET.parse(REPO / "package.xml").getroot()
    assert root.get("format") == "3"
    assert root.findtext("name") == "hydranet_ros"
    assert root.find("export").findtext("build_type") == "ament_python"
    deps = {e.text for e in root.findall("exec_depend")}
    assert {"rclpy", "sensor_msgs", "std_msgs", "diagnostic_msgs", "python3-numpy",
            "python3-opencv", "python3-numba", "python3-torch", "python3-yaml", "vision_msgs", "launch",
            "launch_ros", "ament_index_python"} <= deps


def test_colcon_installs_executables_where_ros2_run_looks(colcon_install):
    for name in EXECUTABLES:
        exe = colcon_install / "lib" / "hydranet_ros" / name
        assert exe.is_file() and os.access(exe, os.X_OK), exe


def test_colcon_installs_share_files(colcon_install):
    share = colcon_install / "share"
    assert (share / "ament_index" / "resource_index" / "packages" / "hydranet_ros").is_file()
    assert (share / "hydranet_ros" / "package.xml").read_text() == (REPO / "package.xml").read_text()
    for name in ("launch/hydranet.launch.py", "config/hydranet.yaml", "config/hydranet.rviz"):
        assert (share / "hydranet_ros" / name).is_file(), name
    for folder in ("launch", "config"):
        for source in sorted((REPO / folder).glob("*")):
            assert (share / "hydranet_ros" / folder / source.name).is_file(), source.name


def test_installed_command_runs_from_the_install_space(colcon_install):
    site = next((colcon_install / "lib").glob("python3*/site-packages"))
    env = {**os.environ, "PYTHONPATH": str(site)}
    result = subprocess.run([str(colcon_install / "lib" / "hydranet_ros" / "hydranet-weights"),
                             "list"], capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "ExpNYUD_three.ckpt" in result.stdout
    assert (site / "hydranet_ros" / "bundled" / "hydranet_synthetic.ckpt").is_file()
    assert (site / "hydranet_ros" / "presets.json").is_file()


def test_every_command_runs_as_a_module():
    """``python -m hydranet_ros.cli.<name>`` is the command (``--help`` answers, exit 0)."""
    import sys
    commands = sorted(p.stem for p in (REPO / "hydranet_ros" / "cli").glob("*.py")
                      if p.stem not in ("__init__", "common"))
    assert "bench" in commands and "nav2" in commands
    for name in commands:
        done = subprocess.run([sys.executable, "-m", f"hydranet_ros.cli.{name}", "--help"],
                              capture_output=True, text=True, timeout=120, cwd=REPO)
        assert done.returncode == 0, (name, done.stderr)
        assert done.stdout.startswith("usage: hydranet-"), (name, done.stdout[:200])
        assert f"\nhydranet-{name}: " in done.stdout and "``" not in done.stdout, \
            (name, done.stdout[:400])  # the description, without the docstring's markup


def test_console_scripts_are_the_guarded_entry_points():
    """Every installed script goes through entry_points.py, and each names a real module."""
    import ast

    from hydranet_ros import entry_points
    tree = ast.parse((REPO / "setup.py").read_text())
    scripts = next(ast.literal_eval(n.value) for n in tree.body if isinstance(n, ast.Assign)
                   and n.targets[0].id == "CONSOLE_SCRIPTS")
    installed = dict(s.replace(" ", "").split("=") for s in scripts)
    expected = {**entry_points.COMMANDS, **entry_points.NODES}
    assert set(installed) == set(expected)
    for name, module in expected.items():
        function = name.replace("-", "_")
        assert installed[name] == f"hydranet_ros.entry_points:{function}"
        assert callable(getattr(entry_points, function))
        source = REPO / (module.replace(".", "/") + ".py")
        assert "\ndef entry_point() -> None:" in source.read_text(), module


def _interrupted_while_loading(name: str, *args: str) -> subprocess.CompletedProcess:
    """Start console script ``name`` and send SIGINT 0.3 s later, while torch still loads.

    A ``name`` with dots is a module, run as ``python -m name``."""
    import signal
    import sys
    import time
    function = name.replace("-", "_")
    code = f"import sys; from hydranet_ros.entry_points import {function}; sys.exit({function}())"
    run = ["-m", name] if "." in name else ["-c", code]
    proc = subprocess.Popen([sys.executable, *run, *args], cwd=REPO, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    time.sleep(0.3)
    assert proc.poll() is None, "the command ended before the signal: nothing was tested"
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def test_ctrl_c_while_a_command_loads_is_one_line():
    done = _interrupted_while_loading("hydranet-infer", "--help")
    assert done.returncode == 130, done.stderr
    assert done.stderr == "hydranet-infer: interrupted\n" and done.stdout == ""


def test_ctrl_c_while_a_node_loads_ends_it_quietly():
    """As ``ros2 launch`` does to nodes still starting when it is stopped."""
    done = _interrupted_while_loading("hydranet_node")
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")


def test_ctrl_c_while_a_module_run_loads_is_as_its_script():
    """``python -m hydranet_ros.cli.infer`` / ``.ros.node``: the module's own imports run
    outside any ``try``; the packages above it catch a Ctrl-C there instead."""
    done = _interrupted_while_loading("hydranet_ros.cli.infer", "--help")
    assert (done.returncode, done.stdout, done.stderr) == (130, "", "hydranet-infer: interrupted\n")
    done = _interrupted_while_loading("hydranet_ros.ros.node")
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")
