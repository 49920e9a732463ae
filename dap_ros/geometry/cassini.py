"""Cassini -> equirectangular (ERP) resampling, as the official Deep360 loader does it.

Deep360 stores its panoramas in the Cassini projection: an ERP whose polar axis is the camera's
left-right axis, so that a stereo pair has horizontal epipolar lines. A Cassini image of
(Hc, Wc) = (2N, N) becomes an N x 2N ERP.

The official loader (``datasets/deep360.py`` of Insta360-Research-Team/DAP) computes, for each ERP
pixel centre (longitude theta from +pi at the left edge, latitude phi from +pi/2 at the top), the
Cassini coordinates

    theta_c = atan2(tan(phi), cos(theta)),   phi_c = asin(cos(phi) sin(theta))

and samples the Cassini image with ``torch.nn.functional.grid_sample(mode="bilinear",
align_corners=True, padding_mode="border")`` at x = -phi_c / (pi/2), y = -theta_c / pi, for RGB and
depth alike; RGB is then cast back to uint8 by truncation. :func:`cassini_to_erp` repeats that
arithmetic in float32 numpy, so that ``--protocol paper`` sees the official pixels (to float
rounding) without torch. ``mode="nearest"`` samples the same grid without blending: depth values
are copied, never mixed across an object's edge (the standard protocol and make-bag use it).
"""
from __future__ import annotations

import math
from functools import lru_cache

import numpy as np

__all__ = ["cassini_grid", "cassini_to_erp", "is_cassini_shape"]


def is_cassini_shape(shape: tuple[int, ...], tolerance: float = 0.02) -> bool:
    """True for an image twice as high as wide (the Cassini layout), within ``tolerance``."""
    height, width = shape[:2]
    return width > 0 and abs(height / width - 2.0) <= 2.0 * tolerance


@lru_cache(maxsize=8)
def cassini_grid(erp_h: int, erp_w: int) -> tuple[np.ndarray, np.ndarray]:
    """Normalized sampling coordinates (x, y), float32 (erp_h, erp_w) in [-1, 1], of the ERP pixel
    centres in the Cassini image (x across its width, y down its height)."""
    # the official code's ranges: np.arange with a negative step, built in float64, stored as float32
    theta = np.arange(math.pi - math.pi / erp_w, -math.pi, -2.0 * math.pi / erp_w)[:erp_w]
    phi = np.arange(0.5 * math.pi - 0.5 * math.pi / erp_h, -0.5 * math.pi, -math.pi / erp_h)[:erp_h]
    theta_map = np.broadcast_to(theta.astype(np.float32)[None, :], (erp_h, erp_w))
    phi_map = np.broadcast_to(phi.astype(np.float32)[:, None], (erp_h, erp_w))
    theta_c = np.arctan2(np.tan(phi_map), np.cos(theta_map))
    phi_c = np.arcsin(np.cos(phi_map) * np.sin(theta_map))
    x = np.clip(-phi_c / np.float32(0.5 * math.pi), -1, 1).astype(np.float32)
    y = np.clip(-theta_c / np.float32(math.pi), -1, 1).astype(np.float32)
    x.flags.writeable = y.flags.writeable = False  # cached: shared by every caller
    return x, y


def cassini_to_erp(image: np.ndarray, mode: str = "bilinear") -> np.ndarray:
    """Cassini image (Hc, Wc[, C]) -> ERP (Wc, Hc[, C]) of the same dtype.

    ``bilinear``: the official resampling (float32; integer images truncated back, as the official
    ``astype`` does; a non-finite value spreads to its neighbours as in torch). ``nearest``: the
    closest Cassini pixel of each sampling point of the same grid.
    """
    img = np.asarray(image)
    if img.ndim not in (2, 3):
        raise ValueError(f"expected a (H, W) or (H, W, C) Cassini image, got shape {img.shape}")
    cas_h, cas_w = img.shape[:2]
    gx, gy = cassini_grid(cas_w, cas_h)
    # torch's align_corners=True source index, then the border padding's clamp
    ix = np.clip((gx + np.float32(1)) / np.float32(2) * np.float32(cas_w - 1), 0, cas_w - 1)
    iy = np.clip((gy + np.float32(1)) / np.float32(2) * np.float32(cas_h - 1), 0, cas_h - 1)
    if mode == "nearest":
        return img[np.rint(iy).astype(np.int64), np.rint(ix).astype(np.int64)]
    if mode != "bilinear":
        raise ValueError(f"mode must be 'bilinear' or 'nearest', got {mode!r}")
    src = img.astype(np.float32)
    if src.ndim == 2:
        src = src[..., None]
    x0, y0 = np.floor(ix), np.floor(iy)
    w = ix - x0  # distance to the west neighbour
    n = iy - y0  # distance to the north neighbour
    e, s = np.float32(1) - w, np.float32(1) - n
    xw, yn = x0.astype(np.int64), y0.astype(np.int64)
    xe, ys = xw + 1, yn + 1
    has_e, has_s = xe < cas_w, ys < cas_h  # a neighbour outside the image contributes nothing
    xe_c, ys_c = np.minimum(xe, cas_w - 1), np.minimum(ys, cas_h - 1)

    def corner(rows: np.ndarray, cols: np.ndarray, weight: np.ndarray, inside: np.ndarray | bool) -> np.ndarray:
        values = np.where(np.asarray(inside)[..., None], src[rows, cols], np.float32(0))
        return values * weight[..., None]

    out = (corner(yn, xw, s * e, True) + corner(yn, xe_c, s * w, has_e)
           + corner(ys_c, xw, n * e, has_s) + corner(ys_c, xe_c, n * w, has_e & has_s))
    if img.ndim == 2:
        out = out[..., 0]
    return out.astype(img.dtype) if np.issubdtype(img.dtype, np.integer) else out.astype(np.float32)
