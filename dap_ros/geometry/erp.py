"""Equirectangular (ERP) ray geometry (docs/conventions.md, "Pixels, rays and frames").

Conventions (the contract every other module relies on):

- pixel (u, v): column u in [0, W), row v in [0, H), sampled at pixel centres;
- azimuth   phi   = pi - 2 pi (u + 0.5) / W   (radians; centre column -> 0, left half -> phi > 0);
- elevation theta = pi/2 - pi (v + 0.5) / H   (radians; top row looks up);
- unit ray (REP 103 body frame, x forward, y left, z up) = (cos t cos p, cos t sin p, sin t);
- point = range x ray, where range is the radial distance along the ray in metres;
- range semantics (REP 117): finite metres = valid, +Inf = no return within range (sky),
  NaN = invalid. Non-finite ranges give non-finite points.
- azimuth_offset_rad: the camera is mounted yawed by this angle about +z relative to the body
  frame, i.e. a positive offset means the image centre column looks toward yaw = +offset.
  Points are returned in the body frame.

torch is imported only inside :func:`ray_directions_torch`.
"""
from __future__ import annotations

import math
from functools import lru_cache
from numbers import Integral
from typing import Any

import numpy as np

from dap_ros.errors import ConfigError

__all__ = [
    "as_range_image",
    "azimuth_elevation",
    "erp_coordinates",
    "ray_directions",
    "range_to_points",
    "colored_points",
    "ray_directions_torch",
]


def _check_size(height: Any, width: Any) -> tuple[int, int]:
    for name, value in (("height", height), ("width", width)):
        if isinstance(value, bool) or not isinstance(value, Integral) or value <= 0:
            raise ConfigError(f"ERP image {name} must be a positive integer, got {value!r}")
    return int(height), int(width)


def as_range_image(range_m: Any) -> np.ndarray:
    """``range_m`` as a non-empty floating (H, W) array (integers are converted to float32)."""
    arr = np.asarray(range_m)
    if arr.ndim != 2 or arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ValueError(f"range image must be a non-empty (H, W) array, got shape {arr.shape}")
    if not np.issubdtype(arr.dtype, np.floating):
        arr = arr.astype(np.float32)
    return arr


def azimuth_elevation(height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-column azimuth (W,) and per-row elevation (H,) in radians, float64."""
    height, width = _check_size(height, width)
    azimuth = math.pi - 2.0 * math.pi * (np.arange(width, dtype=np.float64) + 0.5) / width
    elevation = math.pi / 2.0 - math.pi * (np.arange(height, dtype=np.float64) + 0.5) / height
    return azimuth, elevation


def _rays_float64(height: int, width: int, azimuth_offset_rad: float = 0.0) -> np.ndarray:
    azimuth, elevation = azimuth_elevation(height, width)
    azimuth = azimuth + azimuth_offset_rad
    cos_el = np.cos(elevation)[:, None]
    rays = np.empty((height, width, 3), dtype=np.float64)
    rays[..., 0] = cos_el * np.cos(azimuth)[None, :]
    rays[..., 1] = cos_el * np.sin(azimuth)[None, :]
    rays[..., 2] = np.sin(elevation)[:, None]
    return rays


@lru_cache(maxsize=16)
def _ray_table(height: int, width: int, azimuth_offset_rad: float, rotation: bytes = b"") -> np.ndarray:
    rays = _rays_float64(height, width, azimuth_offset_rad)
    if rotation:
        rays = rays @ np.frombuffer(rotation, dtype=np.float64).reshape(3, 3).T
    rays = rays.astype(np.float32)
    rays.setflags(write=False)
    return rays


def ray_directions(height: int, width: int, azimuth_offset_rad: float = 0.0, rotation: Any = None) -> np.ndarray:
    """Unit rays (H, W, 3) float32 in the body frame of REP 103, for a camera yawed by
    ``azimuth_offset_rad`` about +z (see the module docstring for the sign), or turned by
    ``rotation`` (a 3x3 matrix taking camera rays into the output frame, e.g. a tilted mount).

    Computed in float64 and rounded once; cached per size and orientation, read-only: copy it
    before modifying.
    """
    height, width = _check_size(height, width)
    offset = float(azimuth_offset_rad)
    if not math.isfinite(offset):
        raise ValueError(f"azimuth_offset_rad must be finite, got {azimuth_offset_rad!r}")
    # normalise to [-pi, pi) so equivalent offsets share one cache entry
    offset = (offset + math.pi) % (2.0 * math.pi) - math.pi
    if rotation is None:
        return _ray_table(height, width, offset)
    matrix = np.asarray(rotation, dtype=np.float64)
    if matrix.shape != (3, 3) or not np.isfinite(matrix).all():
        raise ValueError(f"rotation must be a finite 3x3 matrix, got {matrix.shape}")
    return _ray_table(height, width, offset, matrix.tobytes())


def range_to_points(range_m: np.ndarray, azimuth_offset_rad: float = 0.0, rotation: Any = None) -> np.ndarray:
    """Radial range image (H, W) in metres -> points (H, W, 3) float32 in the body frame.

    NaN ranges give NaN points; +Inf ranges give non-finite points (no warnings are emitted).
    ``azimuth_offset_rad`` / ``rotation`` orient the result as in :func:`ray_directions`.
    """
    rng = as_range_image(range_m)
    rays = ray_directions(rng.shape[0], rng.shape[1], azimuth_offset_rad, rotation)
    with np.errstate(invalid="ignore", over="ignore"):
        return rng.astype(np.float32, copy=False)[..., None] * rays


def colored_points(
    range_m: np.ndarray,
    rgb: np.ndarray,
    stride: int = 1,
    min_range: float = 0.0,
    max_range: float = math.inf,
    azimuth_offset_rad: float = 0.0,
    rotation: Any = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Points (N, 3) float32 and their colours (N, 3) uint8 for a range image and its RGB image.

    Keeps pixels with a finite range in [min_range, max_range] (metres), taking every
    ``stride``-th row and column (starting at row 0, column 0). Order is row-major.
    """
    rng = as_range_image(range_m)
    colors = np.asarray(rgb)
    if colors.shape != rng.shape + (3,):
        raise ValueError(
            f"rgb must have shape {rng.shape + (3,)} to match the range image, got {colors.shape}"
        )
    if isinstance(stride, bool) or not isinstance(stride, Integral) or stride < 1:
        raise ValueError(f"stride must be a positive integer, got {stride!r}")
    if min_range > max_range:
        raise ValueError(f"min_range ({min_range}) must not exceed max_range ({max_range})")
    rays = ray_directions(rng.shape[0], rng.shape[1], azimuth_offset_rad, rotation)[::stride, ::stride]
    sub = rng[::stride, ::stride].astype(np.float32, copy=False)
    with np.errstate(invalid="ignore"):
        keep = np.isfinite(sub) & (sub >= min_range) & (sub <= max_range)
    points = sub[keep][:, None] * rays[keep]
    out_colors = colors[::stride, ::stride][keep]
    if out_colors.dtype != np.uint8:
        out_colors = np.clip(out_colors, 0, 255).astype(np.uint8)
    return points.astype(np.float32, copy=False), np.ascontiguousarray(out_colors)


def erp_coordinates(rays: Any, height: int, width: int, xp: Any = np) -> tuple[Any, Any]:
    """Unit rays (..., 3) -> continuous ERP pixel coordinates (u, v) of an (height, width) image:
    the inverse of the ray formula (pixel centres at integers; u wraps at the image's edges).
    Takes numpy or torch arrays alike (``xp`` is the array module)."""
    x, y, z = rays[..., 0], rays[..., 1], rays[..., 2]
    azimuth = xp.arctan2(y, x)
    elevation = xp.arcsin(xp.clip(z, -1.0, 1.0))
    u = (math.pi - azimuth) * (width / (2.0 * math.pi)) - 0.5
    v = (math.pi / 2.0 - elevation) * (height / math.pi) - 0.5
    return u, v


def ray_directions_torch(height: int, width: int, device: Any = None, dtype: Any = None) -> Any:
    """The ray table of :func:`ray_directions` as a torch tensor (H, W, 3) on ``device``.

    Computed in float64 and cast once, so every dtype matches the numpy table to rounding.
    ``dtype`` defaults to torch.float32. The result is a fresh tensor (not cached).
    """
    import torch

    height, width = _check_size(height, width)
    rays = torch.from_numpy(_rays_float64(height, width))
    return rays.to(device=device, dtype=dtype if dtype is not None else torch.float32)
