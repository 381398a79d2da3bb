"""The DDS transport of this package's publishers: large samples reach subscribers on the
same host.

With the default Fast DDS settings of ROS 2, a sample larger than the shared-memory segment
(0.5 MB: a 640x480 depth image is 1.2 MB, its organized point cloud 5.5 MB) goes over UDP
fragments on the loopback, where bursts overflow the socket buffers: best-effort
subscribers in other processes (Nav2's costmap layers, ``ros2 topic hz``) then receive few
of them, or none. ``config/fastdds_large_data.xml`` gives the publishing participant a
64 MiB shared-memory segment (and UDPv4 for discovery and other machines); subscribers need
nothing.

The profile has to be in place before the process creates its first node (that is when
rmw_fastrtps creates the DDS participant), so it is switched by an environment variable,
not a node parameter: ``HYDRANET_DDS_PROFILE=off`` keeps Fast DDS's defaults. A profile of
the user's own (``FASTDDS_DEFAULT_PROFILES_FILE``, ``FASTDDS_BUILTIN_TRANSPORTS``, a
``DEFAULT_FASTDDS_PROFILES.xml`` in the working directory) always wins, and other RMWs are
left alone.
"""

from __future__ import annotations

import os
import shutil
import sys
import xml.etree.ElementTree as ElementTree
from collections.abc import MutableMapping
from dataclasses import dataclass
from pathlib import Path

PACKAGE = "hydranet_ros"
PROFILE_FILE = "fastdds_large_data.xml"
#: ``off`` (or 0, false, no) keeps Fast DDS's default transports.
SWITCH = "HYDRANET_DDS_PROFILE"
OFF_VALUES = ("off", "0", "false", "no")
#: Where Fast DDS looks for a default profile: 3.x (ROS 2 Kilted and later) reads the first,
#: 2.x (Humble, Jazzy) the second (3.x's rmw warns that it is deprecated); we set the one the
#: loaded Fast DDS reads, and either set by the user wins.
PROFILE_VARIABLES = ("FASTDDS_DEFAULT_PROFILES_FILE", "FASTRTPS_DEFAULT_PROFILES_FILE")
#: The library of Fast DDS 2.x; 3.x is libfastdds.
FAST_DDS_2_LIBRARY = "libfastrtps.so"
#: Other ways a user chooses Fast DDS's transports, which we never override.
USER_TRANSPORT_VARIABLES = ("FASTDDS_BUILTIN_TRANSPORTS",)
#: Profiles Fast DDS loads from the working directory by itself.
WORKING_DIRECTORY_PROFILES = ("DEFAULT_FASTDDS_PROFILES.xml", "DEFAULT_FASTRTPS_PROFILES.xml")
FAST_DDS_PREFIX = "rmw_fastrtps"
SHARED_MEMORY = Path("/dev/shm")
XML_NAMESPACE = "{http://www.eprosima.com}"


@dataclass(frozen=True)
class TransportSetting:
    """What a process's DDS transport is, as one log line; ``warning`` when it is not what
    it should be for large samples and the user can fix that."""
    applied: bool
    message: str
    warning: bool = False


def profile_path() -> Path | None:
    """The shipped profile: in the package's share folder (colcon or pip install), else in
    the source checkout (editable install)."""
    candidates = []
    try:
        from ament_index_python.packages import (PackageNotFoundError,
                                                 get_package_share_directory)
        try:
            candidates.append(Path(get_package_share_directory(PACKAGE)) / "config")
        except (PackageNotFoundError, OSError):  # not in the index, or no index at all
            pass
    except ImportError:
        pass
    candidates += [Path(sys.prefix) / "share" / PACKAGE / "config",
                   Path(__file__).resolve().parents[2] / "config"]
    return next((c / PROFILE_FILE for c in candidates if (c / PROFILE_FILE).is_file()), None)


def segment_bytes(profile: Path) -> int:
    """The shared-memory segment size the profile asks for."""
    root = ElementTree.parse(profile).getroot()
    sizes = [int(e.text) for e in root.iter(f"{XML_NAMESPACE}segment_size")]
    return max(sizes, default=0)


def _mib(size: int) -> str:
    return f"{size / 2**20:.0f} MiB"


def loaded_library(name: str, maps: Path = Path("/proc/self/maps")) -> str | None:
    """The path of a shared library this process has loaded whose file name starts with
    ``name`` (after ``rclpy.init``: rcl, the RMW library, Fast DDS); None if none is."""
    try:
        text = maps.read_text()
    except OSError:
        return None
    for line in text.splitlines():
        path = line.split(maxsplit=5)[-1] if line.count(" ") >= 5 else ""
        if os.path.basename(path).startswith(name):
            return path
    return None


def profile_variable(maps: Path = Path("/proc/self/maps")) -> str:
    """The variable the Fast DDS loaded in this process reads (after ``rclpy.init``, the RMW
    library and Fast DDS are mapped): FASTRTPS_... for 2.x, FASTDDS_... for 3.x and later."""
    return PROFILE_VARIABLES[1] if loaded_library(FAST_DDS_2_LIBRARY, maps) is not None \
        else PROFILE_VARIABLES[0]


def configure_large_data(rmw: str, environ: MutableMapping[str, str] = os.environ,
                         cwd: Path | None = None, shared_memory: Path = SHARED_MEMORY,
                         profile: Path | None = None,
                         variable: str | None = None) -> TransportSetting:
    """Point Fast DDS at the large-data profile unless the user chose otherwise; call it
    after ``rclpy.init`` and before the process's first node. Returns what is in effect."""
    if not rmw.startswith(FAST_DDS_PREFIX):
        return TransportSetting(False, f"DDS transport: {rmw}'s own settings (the large-sample "
                                "profile of this package is for Fast DDS only)")
    if environ.get(SWITCH, "").strip().lower() in OFF_VALUES:
        return TransportSetting(False, f"DDS transport: Fast DDS defaults ({SWITCH}="
                                f"{environ[SWITCH]}); samples over 0.5 MB go over UDP, where "
                                "best-effort subscribers lose many of them")
    profile = profile or profile_path()
    if profile is None:
        return TransportSetting(False, f"DDS transport: Fast DDS defaults: {PROFILE_FILE} was "
                                f"not found in the {PACKAGE} installation", warning=True)
    given = {name: environ[name] for name in PROFILE_VARIABLES if environ.get(name)}
    theirs = {n: v for n, v in given.items() if Path(v).resolve() != profile.resolve()}
    if theirs:
        name, value = next(iter(theirs.items()))
        return TransportSetting(False, f"DDS transport: Fast DDS with the user's profile "
                                f"{value} ({name})")
    if given:  # ours, set by a parent process
        return TransportSetting(True, f"DDS transport: Fast DDS with {profile} (from "
                                f"{', '.join(given)})")
    for name in USER_TRANSPORT_VARIABLES:
        if environ.get(name):
            return TransportSetting(False, f"DDS transport: Fast DDS with {name}={environ[name]}")
    for name in WORKING_DIRECTORY_PROFILES:
        if ((cwd or Path.cwd()) / name).is_file():
            return TransportSetting(False, f"DDS transport: Fast DDS with the user's profile "
                                    f"{name} in the working directory")
    size = segment_bytes(profile)
    if shared_memory.is_dir():
        free = shutil.disk_usage(shared_memory).free
        if free < 2 * size:
            return TransportSetting(False, f"DDS transport: Fast DDS defaults: {shared_memory} "
                                    f"has {_mib(free)} free, too little for a {_mib(size)} "
                                    "shared-memory segment (in Docker: --shm-size=1g); samples "
                                    "over 0.5 MB go over UDP, where best-effort subscribers "
                                    "lose many of them", warning=True)
    environ[variable or profile_variable()] = str(profile)
    return TransportSetting(True, f"DDS transport: Fast DDS, shared memory with a {_mib(size)} "
                            "segment for subscribers on this host, UDPv4 for others "
                            f"({profile}; {SWITCH}=off turns it off)")
