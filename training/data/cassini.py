"""Cassini projection (Deep360) -> equirectangular (ERP) resampling.

Deep360 stores panoramas in the Cassini projection: the ERP of a sphere whose polar axis is the
camera's *left-right* axis (y, REP 103), so that left-right stereo pairs have horizontal epipolar
lines. A Cassini image has shape (Hc, Wc) = (2N, N) and maps to an N x 2N ERP.

For a unit ray d = (x forward, y left, z up) (docs/conventions.md):

- Cassini "longitude" α = atan2(z, x) in (-π, π]: rotation about the y axis; α = 0 looks forward,
  α = π/2 up, ±π backward. Rows: α = π at the top edge down to -π at the bottom edge,
  row(α) = (π - α) / (2π) Hc - 0.5 (pixel centres, periodic in rows).
- Cassini "latitude" β = asin(y) in [-π/2, π/2]: columns go from the left (β = π/2, y = +1) to the
  right edge, col(β) = (π/2 - β) / π Wc - 0.5.

This is the mapping of the Deep360 / MODE reference loaders (their ERP longitude decreases to the
right from +π, as in docs/conventions.md, and their ERP latitude decreases downwards), written with pixel
centres. Nearest sampling is used for depth (never blending ranges), bilinear for RGB; rows wrap
around (α is periodic), columns clamp.
"""
from __future__ import annotations

import math
from functools import lru_cache

import numpy as np

from dap_ros.geometry import ray_directions


def cassini_rays(height: int, width: int) -> np.ndarray:
    """Unit rays (Hc, Wc, 3) float64 at the pixel centres of a Cassini image (REP 103 frame)."""
    alpha = math.pi - 2.0 * math.pi * (np.arange(height) + 0.5) / height  # rows
    beta = math.pi / 2 - math.pi * (np.arange(width) + 0.5) / width  # columns
    ca, sa = np.cos(alpha)[:, None], np.sin(alpha)[:, None]
    cb, sb = np.cos(beta)[None, :], np.sin(beta)[None, :]
    return np.stack([cb * ca, np.broadcast_to(sb, (height, width)), cb * sa], -1)


@lru_cache(maxsize=8)
def _erp_to_cassini_coords(erp_h: int, erp_w: int, cas_h: int, cas_w: int) -> tuple[np.ndarray, np.ndarray]:
    """Continuous Cassini (row, col) pixel coordinates of every ERP pixel centre, float64."""
    d = ray_directions(erp_h, erp_w).astype(np.float64)
    d /= np.linalg.norm(d, axis=-1, keepdims=True)
    alpha = np.arctan2(d[..., 2], d[..., 0])
    beta = np.arcsin(np.clip(d[..., 1], -1.0, 1.0))
    row = (math.pi - alpha) / (2.0 * math.pi) * cas_h - 0.5
    col = (math.pi / 2 - beta) / math.pi * cas_w - 0.5
    return row, col


def cassini_to_erp(image: np.ndarray, mode: str = "nearest", out_size: tuple[int, int] | None = None) -> np.ndarray:
    """Resample a Cassini image (Hc, Wc[, C]) into ERP (Wc, Hc[, C]) or ``out_size`` (H, W).

    ``mode`` = "nearest" (depth, masks: values are copied, never mixed) or "bilinear" (RGB; the
    output keeps the input dtype, rounded for integers).
    """
    img = np.asarray(image)
    cas_h, cas_w = img.shape[:2]
    erp_h, erp_w = out_size if out_size is not None else (cas_w, cas_h)
    row, col = _erp_to_cassini_coords(int(erp_h), int(erp_w), cas_h, cas_w)
    if mode == "nearest":
        r = np.floor(row + 0.5).astype(np.int64) % cas_h
        c = np.clip(np.floor(col + 0.5).astype(np.int64), 0, cas_w - 1)
        return img[r, c]
    if mode != "bilinear":
        raise ValueError(f"mode must be 'nearest' or 'bilinear', got {mode!r}")
    r0 = np.floor(row)
    c0 = np.floor(col)
    fr, fc = row - r0, col - c0
    r0 = r0.astype(np.int64)
    c0 = c0.astype(np.int64)
    src = img.astype(np.float64)
    if src.ndim == 2:
        src = src[..., None]
    out = np.zeros((int(erp_h), int(erp_w), src.shape[2]), dtype=np.float64)
    for dr, wr in ((0, 1.0 - fr), (1, fr)):
        rr = (r0 + dr) % cas_h
        for dc, wc in ((0, 1.0 - fc), (1, fc)):
            cc = np.clip(c0 + dc, 0, cas_w - 1)
            out += (wr * wc)[..., None] * src[rr, cc]
    if img.ndim == 2:
        out = out[..., 0]
    if np.issubdtype(img.dtype, np.integer):
        info = np.iinfo(img.dtype)
        return np.clip(np.rint(out), info.min, info.max).astype(img.dtype)
    return out.astype(img.dtype)
