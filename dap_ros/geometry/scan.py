"""360-degree 2-D laser scan from an ERP range image (for sensor_msgs/LaserScan and Nav2).

Beam i points at yaw ``-pi + i * angle_increment`` in the body frame (angle_min = -pi, counter-
clockwise, like sensor_msgs/LaserScan) and collects the columns whose body-frame azimuth lies in
``[angle - inc/2, angle + inc/2)``, with wrap-around (the ERP is periodic). A beam that no column
centre falls into (increment finer than the image's columns) takes the nearest column.

Only rows whose elevation lies inside ``[elevation_min_deg, elevation_max_deg]`` are used (if the
band is thinner than one row, the single row nearest its centre). The beam value is the nearest
*horizontal* range ``range * cos(elevation)`` in metres (the distance a 2-D costmap needs) among
pixels whose radial range lies in ``[range_min, range_max]``. A beam without such a pixel is, per
REP 117: ``+Inf`` if any of its pixels is +Inf or beyond range_max (free space, lets Nav2 clear),
else ``-Inf`` if any is below range_min, else ``NaN``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from dap_ros.geometry.erp import as_range_image, azimuth_elevation
from dap_ros.settings import DEPTH_SCALE_M

__all__ = ["MAX_BEAMS_PER_COLUMN", "LaserScanSpec", "laser_scan", "scan_angles"]

# The most beams per image column a caller should ask for (the node's limit on its increment):
# beyond a few per column, beams repeat their nearest column and resolve nothing new.
MAX_BEAMS_PER_COLUMN = 4

# Sort keys above every valid horizontal range: min() over a beam then yields a valid range if
# there is one, else FAR if any pixel is far, else NEAR if any is near, else NONE.
_FAR = np.float32(3.0e38)
_NEAR = np.float32(3.2e38)
_NONE = np.float32(np.inf)
_MAX_RANGE_LIMIT = 1.0e38


@dataclass(frozen=True)
class LaserScanSpec:
    """Laser scan layout: angles in radians, the elevation band in degrees, ranges in metres."""

    angle_increment: float = 2.0 * math.pi / 720
    elevation_min_deg: float = -5.0
    elevation_max_deg: float = 5.0
    range_min: float = 0.1
    range_max: float = DEPTH_SCALE_M

    def __post_init__(self) -> None:
        values = {name: getattr(self, name) for name in self.__dataclass_fields__}
        for name, value in values.items():
            if isinstance(value, bool) or not isinstance(value, (int, float, np.number)):
                raise ValueError(f"LaserScanSpec.{name} must be a number, got {value!r}")
            if not math.isfinite(value):
                raise ValueError(f"LaserScanSpec.{name} must be finite, got {value!r}")
        if not 0.0 < self.angle_increment <= math.pi:
            raise ValueError(
                "LaserScanSpec.angle_increment must be in (0, pi] radians, "
                f"got {self.angle_increment}"
            )
        if not -90.0 <= self.elevation_min_deg < self.elevation_max_deg <= 90.0:
            raise ValueError(
                "LaserScanSpec elevation band must satisfy -90 <= elevation_min_deg < "
                f"elevation_max_deg <= 90, got [{self.elevation_min_deg}, {self.elevation_max_deg}]"
            )
        if self.range_min < 0.0:
            raise ValueError(f"LaserScanSpec.range_min must be >= 0 m, got {self.range_min}")
        if self.range_max <= self.range_min:
            raise ValueError(
                "LaserScanSpec needs range_min < range_max, "
                f"got {self.range_min} >= {self.range_max}"
            )
        if self.range_max >= _MAX_RANGE_LIMIT:
            raise ValueError(f"LaserScanSpec.range_max must be < 1e38 m, got {self.range_max}")

    @property
    def num_beams(self) -> int:
        """Number of beams, round(2 pi / angle_increment)."""
        return max(1, round(2.0 * math.pi / self.angle_increment))

    @property
    def angle_min(self) -> float:
        """Yaw of beam 0 (rad): -pi."""
        return -math.pi

    @property
    def angle_max(self) -> float:
        """Yaw of the last beam (rad), as sensor_msgs/LaserScan.angle_max."""
        return -math.pi + (self.num_beams - 1) * self.angle_increment


def scan_angles(spec: LaserScanSpec) -> np.ndarray:
    """Beam yaws (num_beams,) float64 in radians: -pi + i * angle_increment."""
    return -math.pi + np.arange(spec.num_beams, dtype=np.float64) * spec.angle_increment


@dataclass(frozen=True)
class _ScanPlan:
    rows: slice  # rows inside the elevation band
    cos_el: np.ndarray  # (R, 1) float32
    columns: np.ndarray  # column indices grouped by beam (every beam has >= 1)
    starts: np.ndarray  # start of each beam's group in `columns` (num_beams,)


def _nearest_columns(yaw: np.ndarray, width: int, azimuth_offset_rad: float) -> np.ndarray:
    """Index of the column whose centre is angularly nearest to each body-frame ``yaw`` (rad).

    Inverts the ERP azimuth (column centres are evenly spaced), so the cost is O(len(yaw)), not
    O(len(yaw) x width) as a search over the columns would be.
    """
    u = (math.pi + azimuth_offset_rad - yaw) * (width / (2.0 * math.pi)) - 0.5
    return np.mod(np.rint(u), width).astype(np.int64)


@lru_cache(maxsize=32)
def _plan(height: int, width: int, spec: LaserScanSpec, azimuth_offset_rad: float) -> _ScanPlan:
    azimuth, elevation = azimuth_elevation(height, width)
    el_deg = np.degrees(elevation)
    inside = np.nonzero((el_deg >= spec.elevation_min_deg) & (el_deg <= spec.elevation_max_deg))[0]
    if inside.size == 0:  # band thinner than a row: the nearest row to its centre
        centre = 0.5 * (spec.elevation_min_deg + spec.elevation_max_deg)
        inside = np.array([int(np.argmin(np.abs(el_deg - centre)))])
    rows = slice(int(inside[0]), int(inside[-1]) + 1)  # elevation is monotonic: contiguous
    cos_el = np.cos(elevation[rows]).astype(np.float32)[:, None]

    n, inc = spec.num_beams, spec.angle_increment
    two_pi = 2.0 * math.pi
    body_az = azimuth + azimuth_offset_rad
    # offset from beam 0's lower edge, wrapped into [0, 2 pi)
    rel = np.mod(body_az + math.pi + 0.5 * inc, two_pi)
    beam = np.floor(rel / inc).astype(np.int64)
    beam[beam >= n] = -1  # in the gap left when n * inc < 2 pi: belongs to no beam

    counts = np.bincount(beam[beam >= 0], minlength=n)
    empty = np.nonzero(counts == 0)[0]
    col_beam = beam
    col_idx = np.arange(width)
    if empty.size:  # give each empty beam the column whose centre is angularly nearest
        col_beam = np.concatenate([beam, empty])
        col_idx = np.concatenate([col_idx, _nearest_columns(-math.pi + empty * inc, width, azimuth_offset_rad)])
    keep = col_beam >= 0
    col_beam, col_idx = col_beam[keep], col_idx[keep]
    order = np.argsort(col_beam, kind="stable")
    columns = col_idx[order]
    starts = np.searchsorted(col_beam[order], np.arange(n))
    columns.setflags(write=False)
    starts.setflags(write=False)
    cos_el.setflags(write=False)
    return _ScanPlan(rows=rows, cos_el=cos_el, columns=columns, starts=starts)


def laser_scan(
    range_m: np.ndarray, spec: LaserScanSpec | None = None, azimuth_offset_rad: float = 0.0
) -> np.ndarray:
    """Ranges (num_beams,) float32 of a 360-degree scan from a radial range image (H, W) in metres.

    See the module docstring for beam layout, the elevation band, horizontal ranges and the
    +Inf / -Inf / NaN rules. ``azimuth_offset_rad``: camera yaw in the body frame (positive = the
    image centre column looks toward +offset), so the scan is in the body frame.
    """
    spec = LaserScanSpec() if spec is None else spec
    rng = as_range_image(range_m)
    offset = float(azimuth_offset_rad)
    if not math.isfinite(offset):
        raise ValueError(f"azimuth_offset_rad must be finite, got {azimuth_offset_rad!r}")
    offset = (offset + math.pi) % (2.0 * math.pi) - math.pi
    plan = _plan(rng.shape[0], rng.shape[1], spec, offset)

    band = rng[plan.rows].astype(np.float32, copy=False)
    with np.errstate(invalid="ignore", over="ignore"):
        key = np.where(np.isnan(band), _NONE, band * plan.cos_el)
        key = np.where(band < spec.range_min, _NEAR, key)
        key = np.where(band > spec.range_max, _FAR, key)
    column_min = key.min(axis=0)
    beam_min = np.minimum.reduceat(column_min[plan.columns], plan.starts)
    out = beam_min.astype(np.float32)
    out[beam_min == _FAR] = np.inf
    out[beam_min == _NEAR] = -np.inf
    out[beam_min == _NONE] = np.nan
    return out
