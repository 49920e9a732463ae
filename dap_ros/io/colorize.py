"""Colour a range image for viewing (turbo colormap, log scale keeps near structure visible)."""
from __future__ import annotations

import numpy as np

from dap_ros.settings import DEPTH_SCALE_M

__all__ = ["colorize_range", "turbo_lut", "to_bgr", "NAN_COLOR", "INF_COLOR"]

NAN_COLOR = (0, 0, 0)  # invalid pixels: black
INF_COLOR = (32, 32, 32)  # +Inf (sky / beyond range): fixed dark grey, distinct from turbo

# Google's "turbo" colormap (Mikhailov 2019, Apache-2.0), 17 key colours at t = 0, 1/16, ..., 1
# (sampled once from the reference table); linear interpolation between them stays within
# 7/255 of the reference (mean 1.5/255).
_TURBO_KEYS = np.array(
    [
        [48, 18, 59], [64, 64, 162], [70, 107, 227], [66, 148, 255], [40, 188, 235],
        [24, 221, 194], [50, 242, 152], [109, 254, 98], [164, 252, 60], [205, 236, 52],
        [238, 207, 58], [253, 172, 52], [251, 126, 33], [235, 80, 14], [208, 47, 5],
        [169, 22, 1], [122, 4, 3],
    ],
    dtype=np.float64,
)

_LUT: np.ndarray | None = None


def turbo_lut() -> np.ndarray:
    """The 256-entry turbo table (256, 3) uint8, index 0 = dark blue, 255 = dark red. Read-only."""
    global _LUT
    if _LUT is None:
        t = np.linspace(0.0, 1.0, 256)
        keys_t = np.linspace(0.0, 1.0, len(_TURBO_KEYS))
        rgb = np.stack([np.interp(t, keys_t, _TURBO_KEYS[:, c]) for c in range(3)], axis=1)
        lut = np.rint(rgb).astype(np.uint8)
        lut.setflags(write=False)
        _LUT = lut
    return _LUT


def colorize_range(
    range_m: np.ndarray, max_range: float | None = None, min_range: float | None = None
) -> np.ndarray:
    """Range image (H, W) in metres -> (H, W, 3) uint8 RGB.

    Colour follows log(range) between ``min_range`` and ``max_range`` (defaults: the 1st and 99th
    percentile of finite positive ranges): near = red, far = blue, beyond the limits clipped.
    NaN (and values <= 0) -> black, +Inf -> INF_COLOR, -Inf (too close) -> the nearest colour.
    """
    r = np.asarray(range_m, dtype=np.float32)
    if r.ndim != 2:
        raise ValueError(f"range image must be (H, W), got shape {r.shape}")
    with np.errstate(invalid="ignore"):
        finite = np.isfinite(r) & (r > 0)
    values = r[finite]
    auto_lo, auto_hi = 0.1, DEPTH_SCALE_M
    if values.size:
        auto_lo, auto_hi = (float(v) for v in np.percentile(values, [1, 99]))
    lo = auto_lo if min_range is None else float(min_range)
    hi = auto_hi if max_range is None else float(max_range)
    lo = max(lo, 1e-3)
    hi = max(hi, lo * 1.001)
    log_lo, log_hi = np.log(lo), np.log(hi)
    safe = np.where(finite, r, lo)
    t = (np.log(safe) - log_lo) / (log_hi - log_lo)
    index = np.rint((1.0 - np.clip(t, 0.0, 1.0)) * 255.0).astype(np.uint8)
    index[r == -np.inf] = 255
    out = turbo_lut()[index]
    out[np.isnan(r) | ((r <= 0) & (r != -np.inf))] = NAN_COLOR
    out[r == np.inf] = INF_COLOR
    return out


def to_bgr(rgb: np.ndarray) -> np.ndarray:
    """(H, W, 3) RGB -> contiguous BGR copy (for bgr8 messages / OpenCV)."""
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"expected an (H, W, 3) image, got shape {rgb.shape}")
    return np.ascontiguousarray(rgb[..., ::-1])
