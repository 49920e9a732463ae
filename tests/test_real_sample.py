"""Conventions checked on a real Matterport3D panorama with ground-truth radial depth.

The reference data live next to the repository in ../shared/reference and are never copied in.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from dap_ros.geometry import LaserScanSpec, laser_scan, range_to_points
from dap_ros.io import load_rgb, read_exr_depth

REFERENCE = Path(__file__).resolve().parents[1].parent / "shared" / "reference"
SAMPLE = REFERENCE / "real_sample"
DEPTH = SAMPLE / "matterport3d_depth.exr"
RGB = SAMPLE / "matterport3d_rgb.png"

pytestmark = pytest.mark.skipif(
    not DEPTH.is_file(), reason=f"reference sample not found at {DEPTH} (shared/reference missing)"
)


@pytest.fixture(scope="module")
def points() -> np.ndarray:
    depth = read_exr_depth(DEPTH)
    assert depth.shape == (512, 1024)
    valid = np.isfinite(depth)
    assert 0 < (~valid).sum() <= 2  # the 1e10 markers became NaN
    assert 1.0 < np.nanmin(depth) and np.nanmax(depth) < 12.0
    return range_to_points(depth)


def _horizontal_plane(pts: np.ndarray) -> tuple[float, float, float]:
    """Height, RMS residual of z = c, and tilt (rad) of a least-squares plane z = ax + by + c."""
    p = pts.reshape(-1, 3)
    p = p[np.all(np.isfinite(p), axis=1)].astype(np.float64)
    z = p[:, 2]
    height = float(z.mean())
    rms = float(np.sqrt(np.mean((z - height) ** 2)))
    a, b, _ = np.linalg.lstsq(np.c_[p[:, :2], np.ones(len(p))], z, rcond=None)[0]
    return height, rms, float(np.arctan(np.hypot(a, b)))


def test_floor_plane(points):
    h = points.shape[0]
    height, rms, tilt = _horizontal_plane(points[h - round(0.15 * h):])
    assert abs(height - (-1.30)) < 0.05, height
    assert rms < 0.01, rms
    assert tilt < np.radians(1.0), np.degrees(tilt)


def test_ceiling_plane(points):
    h = points.shape[0]
    height, rms, tilt = _horizontal_plane(points[: round(0.10 * h)])
    assert abs(height - 1.75) < 0.05, height
    assert rms < 0.01, rms
    assert tilt < np.radians(1.0), np.degrees(tilt)


def test_rgb_matches_depth_and_scan_is_indoor():
    rgb = load_rgb(RGB)
    assert rgb.shape == (512, 1024, 3) and rgb.dtype == np.uint8
    scan = laser_scan(read_exr_depth(DEPTH), LaserScanSpec())
    # an indoor room: every beam sees something within the depth's valid range
    assert np.all(np.isfinite(scan))
    assert 0.5 < scan.min() and scan.max() < 12.0
