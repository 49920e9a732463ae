"""Reading RGB images of any Pillow mode as (H, W, 3) uint8, and the ERP 2:1 aspect check."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from dap_ros.errors import ImageError

__all__ = ["load_rgb", "pil_to_rgb", "check_equirectangular"]

FORCE_TOLERANCE = 0.10  # relative deviation from 2:1 accepted with force=True


def pil_to_rgb(image) -> np.ndarray:
    """Convert a loaded Pillow image (any common mode) to (H, W, 3) uint8 RGB; alpha is dropped.
    The one conversion of files (CLI) and compressed camera frames (node)."""
    mode = image.mode
    if mode == "RGB":
        return np.asarray(image, dtype=np.uint8)
    if mode.startswith("I;16") or mode == "I":  # 16-bit (or 32-bit int holding 16-bit) grayscale
        # 0..65535 -> 0..255 rounded (65535 = 255 x 257), in integers: no float copies of the frame
        gray = np.clip(np.asarray(image), 0, 65535).astype(np.uint32)
        gray += 128
        gray //= 257
        return np.repeat(gray.astype(np.uint8)[..., None], 3, axis=2)
    if mode == "F":  # float images: [0, 1] if they fit, else already 0..255
        values = np.asarray(image).astype(np.float64)
        scale = 255.0 if values.size and np.nanmax(values) <= 1.0 else 1.0
        gray = np.clip(np.rint(np.nan_to_num(values * scale)), 0, 255).astype(np.uint8)
        return np.repeat(gray[..., None], 3, axis=2)
    if mode in ("P", "PA"):  # palettes may carry transparency: go through RGBA, then drop it
        return np.asarray(image.convert("RGBA"), dtype=np.uint8)[..., :3].copy()
    if mode == "RGBA" or mode == "RGBa":
        return np.asarray(image.convert("RGBA"), dtype=np.uint8)[..., :3].copy()
    try:
        return np.asarray(image.convert("RGB"), dtype=np.uint8)
    except (ValueError, OSError) as exc:
        raise ImageError(f"unsupported image mode {mode!r}: {exc}") from None


def load_rgb(path: str | os.PathLike) -> np.ndarray:
    """Read an image file as (H, W, 3) uint8 RGB.

    Grayscale, palette, RGBA/LA (alpha dropped, not composited), CMYK and 16-bit grayscale (scaled
    to 8 bit) are converted. Raises ImageError (one-line message) for a missing, empty, corrupt or
    zero-sized image.
    """
    from PIL import Image, UnidentifiedImageError

    p = Path(path)
    if not p.exists():
        raise ImageError(f"image file not found: {p}")
    if not p.is_file():
        raise ImageError(f"not an image file: {p}")
    if p.stat().st_size == 0:
        raise ImageError(f"image file is empty (0 bytes): {p}")
    try:
        with Image.open(p) as image:
            image.load()
            if image.width == 0 or image.height == 0:
                raise ImageError(f"image has zero size ({image.width}x{image.height}): {p}")
            rgb = pil_to_rgb(image)
    except ImageError:
        raise
    except UnidentifiedImageError:
        raise ImageError(f"not a readable image (unknown format): {p}") from None
    except Image.DecompressionBombError as exc:  # a header claiming billions of pixels: refused before decoding
        raise ImageError(f"image {p} is too large to read: {str(exc).splitlines()[0]}") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ImageError(f"cannot read image {p}: {detail}") from None
    return np.ascontiguousarray(rgb)


def check_equirectangular(
    height: int, width: int, force: bool = False, tolerance: float = 0.02, what: str = "image"
) -> None:
    """Raise ImageError unless width / height is 2 within ``tolerance`` (relative).

    With ``force=True`` ratios within 10 % of 2 are accepted too; wildly different ones never are.
    ``what`` names the image in the message (a file name, "input image", ...).
    """
    if height <= 0 or width <= 0:
        raise ImageError(f"{what} has zero size ({width}x{height})")
    ratio = width / height
    deviation = abs(ratio - 2.0) / 2.0
    if deviation <= tolerance or (force and deviation <= FORCE_TOLERANCE):
        return
    base = (
        f"{what} is {width}x{height} (ratio {ratio:.2f}); an equirectangular panorama is 2:1 "
        f"(width = 2 x height)"
    )
    if force:
        raise ImageError(
            f"{base}, and even with --force only ratios within {FORCE_TOLERANCE:.0%} of 2:1 "
            "are accepted"
        )
    raise ImageError(f"{base}, use --force to accept near-2:1 images")
