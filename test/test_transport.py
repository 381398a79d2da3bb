"""The large-data DDS profile: when it is applied, when it is left alone, and what it says."""

from __future__ import annotations

import os
import subprocess
import sys
from collections import namedtuple
from pathlib import Path

import pytest

from conftest import REPO, import_or_skip
from hydranet_ros.ros import transport
from hydranet_ros.ros.transport import (PROFILE_VARIABLES, SWITCH, configure_large_data,
                                        profile_path, profile_variable, segment_bytes)

PROFILE = REPO / "config" / "fastdds_large_data.xml"
FAST_DDS = "rmw_fastrtps_cpp"


def configure(tmp_path: Path, environ: dict, rmw: str = FAST_DDS, **kwargs):
    kwargs.setdefault("variable", "FASTDDS_DEFAULT_PROFILES_FILE")
    return configure_large_data(rmw, environ, cwd=tmp_path, shared_memory=tmp_path,
                                profile=PROFILE, **kwargs)


def test_the_shipped_profile_asks_for_a_64_mib_segment():
    assert segment_bytes(PROFILE) == 64 * 2**20


def test_applied_by_default_on_fast_dds(tmp_path):
    environ: dict[str, str] = {}
    setting = configure(tmp_path, environ)
    assert setting.applied and not setting.warning
    assert environ == {"FASTDDS_DEFAULT_PROFILES_FILE": str(PROFILE)}
    assert "64 MiB" in setting.message and f"{SWITCH}=off" in setting.message
    assert "\n" not in setting.message


@pytest.mark.parametrize("value", ["off", "OFF", "0", "false", "no"])
def test_switched_off_by_the_environment(tmp_path, value):
    environ = {SWITCH: value}
    setting = configure(tmp_path, environ)
    assert not setting.applied and environ == {SWITCH: value}
    assert "defaults" in setting.message


def test_other_rmws_are_left_alone(tmp_path):
    environ: dict[str, str] = {}
    setting = configure(tmp_path, environ, rmw="rmw_cyclonedds_cpp")
    assert not setting.applied and environ == {}
    assert "rmw_cyclonedds_cpp" in setting.message


@pytest.mark.parametrize("variable", [*PROFILE_VARIABLES, "FASTDDS_BUILTIN_TRANSPORTS"])
def test_the_users_own_choice_wins(tmp_path, variable):
    environ = {variable: "/etc/my_profile.xml" if "PROFILES" in variable else "LARGE_DATA"}
    before = dict(environ)
    setting = configure(tmp_path, environ)
    assert not setting.applied and environ == before
    assert variable in setting.message


def test_our_own_profile_set_by_a_parent_process_counts_as_applied(tmp_path):
    environ = {PROFILE_VARIABLES[0]: str(PROFILE)}
    setting = configure(tmp_path, environ)
    assert setting.applied and environ == {PROFILE_VARIABLES[0]: str(PROFILE)}


def test_a_profile_in_the_working_directory_wins(tmp_path):
    (tmp_path / "DEFAULT_FASTDDS_PROFILES.xml").write_text("<dds/>")
    environ: dict[str, str] = {}
    setting = configure(tmp_path, environ)
    assert not setting.applied and environ == {}
    assert "DEFAULT_FASTDDS_PROFILES.xml" in setting.message


def test_too_little_shared_memory_is_a_warning(tmp_path, monkeypatch):
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(transport.shutil, "disk_usage", lambda _: usage(2**26, 2**26 - 2**20, 2**20))
    environ: dict[str, str] = {}
    setting = configure(tmp_path, environ)
    assert not setting.applied and setting.warning and environ == {}
    assert "1 MiB free" in setting.message and "--shm-size" in setting.message


@pytest.mark.parametrize("library, variable", [
    ("/opt/ros/kilted/lib/libfastdds.so.3.2", "FASTDDS_DEFAULT_PROFILES_FILE"),
    ("/opt/ros/humble/lib/libfastrtps.so.2.6", "FASTRTPS_DEFAULT_PROFILES_FILE")])
def test_the_variable_the_loaded_fast_dds_reads(tmp_path, library, variable):
    """Setting the other one would be ignored (2.x), or warned about as deprecated (3.x)."""
    maps = tmp_path / "maps"
    maps.write_text(f"7f00-7f10 r-xp 00000000 08:01 1234 {library}\n")
    assert profile_variable(maps) == variable
    environ: dict[str, str] = {}
    configure(tmp_path, environ, variable=profile_variable(maps))
    assert environ == {variable: str(PROFILE)}


def test_this_process_reads_fastdds_default_profiles_file():
    rclpy = import_or_skip("rclpy", "rclpy is not installed")  # loads the RMW, Fast DDS
    from rclpy.utilities import get_rmw_implementation_identifier
    if not get_rmw_implementation_identifier().startswith("rmw_fastrtps"):
        pytest.skip("the RMW here is not Fast DDS")
    assert profile_variable() == "FASTDDS_DEFAULT_PROFILES_FILE"  # the PyPI wheels: Fast DDS 3
    del rclpy


def test_the_profile_is_found_in_a_checkout():
    assert profile_path() == PROFILE


def test_the_profile_is_found_in_a_colcon_install(colcon_install):
    site = next((colcon_install / "lib").glob("python3*/site-packages"))
    code = "from hydranet_ros.ros.transport import profile_path; print(profile_path())"
    env = {**os.environ, "PYTHONPATH": str(site), "AMENT_PREFIX_PATH": str(colcon_install)}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                          cwd=colcon_install, timeout=60)
    assert done.returncode == 0, done.stderr
    installed = colcon_install / "share" / "hydranet_ros" / "config" / "fastdds_large_data.xml"
    assert Path(done.stdout.strip()) == installed
    assert installed.read_bytes() == PROFILE.read_bytes()
