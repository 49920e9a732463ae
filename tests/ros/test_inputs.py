"""Lens pairing of two-topic fisheye cameras and the IMU tilt (message fields only, no DDS)."""
from __future__ import annotations

import math

import numpy as np
from builtin_interfaces.msg import Time
from sensor_msgs.msg import Image, Imu
from std_msgs.msg import Header

from dap_ros.geometry.rotation import rpy_matrix
from dap_ros.ros.inputs import ImuTilt, LensPairer


def image(stamp_ms: int) -> Image:
    return Image(header=Header(stamp=Time(sec=stamp_ms // 1000, nanosec=(stamp_ms % 1000) * 1_000_000)))


def imu(stamp_ms: int, roll: float, pitch: float, yaw: float = 0.0, covariance: float = 0.0) -> Imu:
    msg = Imu(header=Header(stamp=Time(sec=stamp_ms // 1000, nanosec=(stamp_ms % 1000) * 1_000_000)))
    cr, sr, cp, sp, cy, sy = (f(a / 2) for a in (roll, pitch, yaw) for f in (math.cos, math.sin))
    msg.orientation.x = sr * cp * cy - cr * sp * sy
    msg.orientation.y = cr * sp * cy + sr * cp * sy
    msg.orientation.z = cr * cp * sy - sr * sp * cy
    msg.orientation.w = cr * cp * cy + sr * sp * sy
    msg.orientation_covariance[0] = covariance
    return msg


def test_lens_pairs_within_the_tolerance():
    pairer = LensPairer(tolerance_ns=5_000_000)
    a0, b0 = image(1000), image(1003)
    assert pairer.add(0, a0) is None
    assert pairer.add(1, b0) == (a0, b0)  # 3 ms apart: a pair, lens 0 first
    assert pairer.add(1, image(2000)) is None
    assert pairer.add(0, image(2010)) is None  # 10 ms: not a pair
    late = image(2020)
    assert pairer.add(1, late) is None  # 10 ms after lens 0's: still not
    early = image(2021)
    assert pairer.add(0, early) == (early, late)
    assert pairer.unpaired == 2  # lens 1 at 2000 and lens 0 at 2010 were dropped with the pair


def test_imu_tilt_nearest_sample_and_staleness():
    tilt = ImuTilt()
    assert tilt.at(0, 10**9) == (None, "no IMU message received yet")
    tilt.add(imu(1000, math.radians(10), math.radians(-5), math.radians(80)))
    tilt.add(imu(1100, math.radians(20), 0.0))
    matrix, problem = tilt.at(1_020_000_000, 50_000_000)
    assert problem == "" and np.allclose(matrix, rpy_matrix(math.radians(10), math.radians(-5), 0.0))  # yaw dropped
    matrix, _ = tilt.at(1_090_000_000, 50_000_000)
    assert np.allclose(matrix, rpy_matrix(math.radians(20), 0.0, 0.0))
    matrix, problem = tilt.at(1_500_000_000, 200_000_000)
    assert matrix is None and "0.400 s from the frame's stamp" in problem
    tilt.add(imu(1200, 0.3, 0.0, covariance=-1.0))  # the driver has no orientation
    assert tilt.rejected == 1
