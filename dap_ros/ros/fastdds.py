"""The Fast DDS profiles shipped with dap_ros, for the Fast DDS that is installed.

Fast DDS 3 (ROS 2 Kilted and later) reads the profiles file named by ``FASTDDS_DEFAULT_PROFILES_FILE``
and knows the XML element ``heartbeat_period``; Fast DDS 2 (Humble, Jazzy) reads only
``FASTRTPS_DEFAULT_PROFILES_FILE`` and rejects that element (its name is ``heartbeatPeriod``). So each
profile ships twice, ``fastdds*.xml`` (3.x) and ``fastdds2*.xml`` (2.x), with the same settings, and
the node's launchers pick the pair member and the variable of the installed version.
"""
from __future__ import annotations

import functools
import os
from importlib import metadata
from pathlib import Path

ASSETS = Path(__file__).resolve().parents[1] / "assets"
PROFILES = ("fastdds", "fastdds_low_latency")  # the 3.x file names; 2.x: fastdds2, fastdds2_low_latency
VARIABLES = {2: "FASTRTPS_DEFAULT_PROFILES_FILE", 3: "FASTDDS_DEFAULT_PROFILES_FILE"}
DISTROS_WITH_FASTDDS_2 = ("humble", "iron", "jazzy")


@functools.cache
def fastdds_major() -> int:
    """Fast DDS's major version: from the installed wheels (``ros-fastdds`` 3.x, ``ros-fastrtps``
    2.x), else from ``ROS_DISTRO`` (a sourced ROS 2 installation); 3 when neither tells."""
    for distribution in ("ros-fastdds", "ros-fastrtps"):
        try:
            return int(metadata.version(distribution).split(".")[0])
        except (metadata.PackageNotFoundError, ValueError):
            continue
    return 2 if os.environ.get("ROS_DISTRO", "").lower() in DISTROS_WITH_FASTDDS_2 else 3


def profiles_variable(major: int | None = None) -> str:
    """The environment variable naming the XML profiles file that Fast DDS ``major`` reads."""
    return VARIABLES[2 if (major or fastdds_major()) < 3 else 3]


def profile_name(profile: str = "fastdds", major: int | None = None) -> str:
    """File name of a shipped profile (``fastdds`` or ``fastdds_low_latency``) for Fast DDS ``major``."""
    if profile not in PROFILES:
        raise ValueError(f"unknown Fast DDS profile {profile!r}; one of {', '.join(PROFILES)}")
    return (profile.replace("fastdds", "fastdds2", 1) if (major or fastdds_major()) < 3 else profile) + ".xml"


def profile_path(profile: str = "fastdds", major: int | None = None) -> Path:
    return ASSETS / profile_name(profile, major)


def user_profile() -> str | None:
    """A profiles file the user chose (either variable set): it wins over ours."""
    return next((os.environ[v] for v in VARIABLES.values() if os.environ.get(v)), None)


def profile_environment(profile: str | os.PathLike | None = None) -> dict[str, str]:
    """{variable: file} that makes a child process load ``profile`` (default: our ``fastdds``
    profile for the installed Fast DDS), or {} when the user has set a profiles file already."""
    if user_profile() is not None:
        return {}
    return {profiles_variable(): str(profile if profile is not None else profile_path())}
