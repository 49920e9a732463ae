"""Rotations between the camera, the mount frame and a gravity-levelled frame (docs/conventions.md).

ROS fixed-axis roll/pitch/yaw: R = Rz(yaw) · Ry(pitch) · Rx(roll); a vector v in the rotated frame
is R · v in the reference frame. All matrices are float64 (3, 3).
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np


def rpy_matrix(roll: float, pitch: float, yaw: float) -> np.ndarray:
    """Rz(yaw) · Ry(pitch) · Rx(roll), angles in radians."""
    cr, sr = math.cos(roll), math.sin(roll)
    cp, sp = math.cos(pitch), math.sin(pitch)
    cy, sy = math.cos(yaw), math.sin(yaw)
    return np.array([
        [cy * cp, cy * sp * sr - sy * cr, cy * sp * cr + sy * sr],
        [sy * cp, sy * sp * sr + cy * cr, sy * sp * cr - cy * sr],
        [-sp, cp * sr, cp * cr],
    ])


def rpy_deg_matrix(rpy_deg: Sequence[float]) -> np.ndarray:
    """:func:`rpy_matrix` of [roll, pitch, yaw] in degrees."""
    roll, pitch, yaw = (math.radians(float(a)) for a in rpy_deg)
    return rpy_matrix(roll, pitch, yaw)


def quaternion_matrix(x: float, y: float, z: float, w: float) -> np.ndarray:
    """The rotation of a (normalized) quaternion, e.g. sensor_msgs/Imu.orientation."""
    n = math.sqrt(x * x + y * y + z * z + w * w)
    if not math.isfinite(n) or n < 1e-9:
        raise ValueError(f"quaternion ({x}, {y}, {z}, {w}) has no rotation")
    x, y, z, w = x / n, y / n, z / n, w / n
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
    ])


def roll_pitch(rotation: np.ndarray) -> tuple[float, float]:
    """(roll, pitch) in radians of a rotation written as Rz(yaw) · Ry(pitch) · Rx(roll)."""
    pitch = math.asin(max(-1.0, min(1.0, -float(rotation[2, 0]))))
    roll = math.atan2(float(rotation[2, 1]), float(rotation[2, 2]))
    return roll, pitch


def tilt_matrix(rotation: np.ndarray) -> np.ndarray:
    """The roll and pitch of ``rotation`` without its yaw: Ry(pitch) · Rx(roll). For the orientation
    of a frame in a gravity-aligned world this maps the frame's vectors to a levelled frame with the
    same heading."""
    roll, pitch = roll_pitch(rotation)
    return rpy_matrix(roll, pitch, 0.0)
