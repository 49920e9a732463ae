"""Helpers of the ROS node tests: frames as camera drivers send them, and the node client's
send-until-outputs in the form the tests use.

Imported by conftest.py after it has set the ROS environment (domain, localhost discovery). The
harness of every test is the package's own :class:`dap_ros.ros.client.NodeClient`.
"""
from __future__ import annotations

import functools
import itertools
import os
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
from builtin_interfaces.msg import Time as TimeMsg

from dap_ros.ros import fastdds
from dap_ros.ros.client import NodeClient, camera_image

REPO = Path(__file__).resolve().parents[2]
REAL_SAMPLE = Path(__file__).resolve().parents[2].parent / "shared/reference/real_sample/matterport3d_rgb.png"

# A tiny random DAP at 64x128: a few ms per frame on CPU.
TINY = {
    "model_config": "tiny",
    "allow_random_weights": True,
    "input_height": 64,
    "input_width": 128,
    "device": "cpu",
    # the random net says "out of range" with probability ~0.5-0.7 everywhere and ~53 m otherwise:
    # 0.3 keeps pixels in range; tests move max_range to get +Inf
    "mask_threshold": 0.3,
}
ALL_OUTPUTS = ("depth", "range_mask", "points", "scan", "colorized")
_names = itertools.count()

# The ROS 2 distributions under test (README, "Tested ROS 2 distributions"): Kilted from the
# unprefixed PyPI wheels (ros-rclpy 9.x, Fast DDS 3), Jazzy from ros-jazzy-* (rclpy 7.x, Fast DDS 2).
RCLPY_MAJOR_DISTRO = {3: "humble", 7: "jazzy", 9: "kilted"}


def _version(distribution: str) -> tuple[int, ...] | None:
    try:
        return tuple(int(part) for part in metadata.version(distribution).split(".")[:3] if part.isdigit())
    except metadata.PackageNotFoundError:
        return None


@functools.cache
def ros_distro() -> str:
    """The ROS 2 distribution the tests run on ('kilted', 'jazzy', ...): the wheel that brought
    rclpy (ros-<distro>-rclpy, or ros-rclpy by its major version), else a sourced install's
    ROS_DISTRO; 'unknown' when neither tells."""
    names = {d.metadata["Name"].lower().replace("_", "-") for d in metadata.distributions()}
    prefixed = sorted(n[len("ros-"):-len("-rclpy")] for n in names if n.startswith("ros-") and n.endswith("-rclpy"))
    prefixed = [distro for distro in prefixed if distro]  # ros-rclpy itself: no prefix
    if prefixed:
        return prefixed[0]
    rclpy = _version("ros-rclpy")
    if rclpy is not None:
        return RCLPY_MAJOR_DISTRO.get(rclpy[0], f"unknown (rclpy {'.'.join(map(str, rclpy))})")
    return os.environ.get("ROS_DISTRO", "unknown")


# Fast DDS's major version decides the profiles variable and XML names (one answer, the package's)
fastdds_major = fastdds.fastdds_major
profiles_variable = fastdds.profiles_variable


def unique_namespace() -> str:
    return f"/t{os.getpid()}_{next(_names)}"


def rgb_image_msg(rgb: np.ndarray, stamp: TimeMsg, frame_id: str = "camera", encoding: str = "rgb8",
                  pad: int = 0) -> Any:
    """An Image the way a driver would send it: any channel order, optional row padding."""
    channels = {"rgb8": rgb, "bgr8": rgb[..., ::-1], "rgba8": np.dstack([rgb, np.full(rgb.shape[:2], 7, np.uint8)]),
                "bgra8": np.dstack([rgb[..., ::-1], np.full(rgb.shape[:2], 7, np.uint8)]),
                "mono8": rgb[..., 0]}[encoding]
    if pad:
        row = channels.reshape(rgb.shape[0], -1)
        padded = np.concatenate([row, np.full((rgb.shape[0], pad), 0xAB, np.uint8)], axis=1)
        msg = camera_image(padded, stamp, frame_id, "mono8")
        msg.encoding, msg.width = encoding, rgb.shape[1]
        return msg
    return camera_image(channels, stamp, frame_id, encoding)


def send_until_outputs(client: NodeClient, publisher: Any, make_msg: Callable[[TimeMsg], Any],
                       names: Any = None, timeout: float = 20.0) -> tuple[Any, dict[str, Any]]:
    """Frames until one stamp has all outputs ``names``: (the input message, {output: message})."""
    msg, got = client.send_until_outputs(make_msg, names, timeout, publisher)
    return msg, got.messages
