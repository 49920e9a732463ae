"""Writing (and reading back) range images: float32 .npy, 16-bit millimetre PNG, mask PNG."""
from __future__ import annotations

import os

import numpy as np

__all__ = ["save_range_npy", "save_range_png_mm", "load_range_png_mm", "save_mask_png"]

PNG_MM_MAX = 65535  # largest value of a 16-bit PNG: 65.535 m


def save_range_npy(path: str | os.PathLike, range_m: np.ndarray) -> None:
    """Save a range image (H, W) in metres as float32 .npy, NaN / +Inf kept, at exactly ``path``."""
    with open(path, "wb") as f:
        np.save(f, np.asarray(range_m, dtype=np.float32))


def range_to_mm(range_m: np.ndarray) -> np.ndarray:
    """Metres -> uint16 millimetres: 0 = invalid (NaN, +-Inf, <= 0); finite values above
    65.535 m are clipped to 65535; positive values below 0.5 mm become 1 (never 0 = invalid)."""
    r = np.asarray(range_m, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        valid = np.isfinite(r) & (r > 0)
        mm = np.rint(np.where(valid, r, 0.0) * 1000.0)
    mm = np.clip(mm, 1, PNG_MM_MAX)
    return np.where(valid, mm, 0).astype(np.uint16)


def save_range_png_mm(path: str | os.PathLike, range_m: np.ndarray) -> None:
    """Save a range image as a 16-bit grayscale PNG in millimetres.

    0 = invalid or out of range (NaN, +Inf sky, -Inf, <= 0); finite ranges beyond 65.535 m are
    clipped to 65535 (so 65535 means ">= 65.535 m"). Resolution 1 mm.
    """
    from PIL import Image

    mm = range_to_mm(range_m)
    if mm.ndim != 2:
        raise ValueError(f"range image must be (H, W), got shape {mm.shape}")
    Image.fromarray(mm).save(path, format="PNG")


def load_range_png_mm(path: str | os.PathLike) -> np.ndarray:
    """Read a millimetre PNG written by :func:`save_range_png_mm` as float32 metres, 0 -> NaN."""
    from PIL import Image

    with Image.open(path) as image:
        mm = np.asarray(image).astype(np.float32)
    return np.where(mm > 0, mm / 1000.0, np.nan).astype(np.float32)


def save_mask_png(path: str | os.PathLike, in_range: np.ndarray) -> None:
    """Save a boolean range mask (H, W) as an 8-bit PNG: 255 = within range, 0 = out of range."""
    from PIL import Image

    mask = np.asarray(in_range, dtype=bool)
    if mask.ndim != 2:
        raise ValueError(f"mask must be (H, W), got shape {mask.shape}")
    Image.fromarray(np.where(mask, 255, 0).astype(np.uint8)).save(path, format="PNG")
