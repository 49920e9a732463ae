"""Reading depth from OpenEXR files (e.g. Matterport3D ground truth) with OpenEXR 3.x."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from dap_ros.errors import ImageError

__all__ = ["read_exr_depth"]

INVALID_ABOVE = 1e9  # datasets mark missing depth with huge values (1e10)
_PREFERRED = ("Z", "Y", "R", "depth", "RGB", "RGBA", "XYZ")


def read_exr_depth(path: str | os.PathLike) -> np.ndarray:
    """Read an EXR depth map as (H, W) float32 metres.

    Takes a single channel (``Z``, ``Y``, ``R``, ...) or the first channel of a group such as
    ``RGB``. Values >= 1e9 and non-finite values become NaN. Raises ImageError on failure.
    """
    p = Path(path)
    if not p.is_file():
        raise ImageError(f"EXR file not found: {p}")
    try:
        import OpenEXR
    except ImportError:
        raise ImageError("reading EXR needs the OpenEXR package (pip install OpenEXR)") from None
    try:
        with OpenEXR.File(str(p)) as exr:
            channels = exr.channels()
            if not channels:
                raise ImageError(f"EXR file has no channels: {p}")
            name = next((n for n in _PREFERRED if n in channels), next(iter(channels)))
            pixels = np.array(channels[name].pixels)
    except ImageError:
        raise
    except Exception as exc:  # noqa: BLE001 - OpenEXR raises RuntimeError / OSError / ValueError variously
        detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ImageError(f"cannot read EXR file {p}: {detail}") from None
    if pixels.ndim == 3:
        pixels = pixels[..., 0]
    if pixels.ndim != 2 or pixels.size == 0:
        raise ImageError(f"EXR channel {name!r} of {p} is not a 2-D image (shape {pixels.shape})")
    depth = pixels.astype(np.float32)
    with np.errstate(invalid="ignore"):
        depth[~np.isfinite(depth) | (depth >= INVALID_ABOVE)] = np.nan
    return depth
