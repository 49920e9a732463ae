"""Camera messages -> uint8 RGB arrays, without cv_bridge: sensor_msgs/Image and CompressedImage.

Reading is free where possible (``np.frombuffer(msg.data)`` and strided views). Every check runs
before a pixel is touched or decoded (a compressed frame's size comes from its JPEG/PNG header), so
the largest frame ever decoded is bounded by ``max_input_width``; a frame that cannot be used raises
:class:`InputRejected` with a short ``kind``, so the node can count and rate-limit its log per
kind of bad input. Only ``height``, ``width``, ``step``, ``encoding``, ``format`` and ``data`` are
read, so rosbags' messages (eval-bag) decode the same way as rclpy's; :func:`check_stamp` reads
the header stamp for the node.
"""
from __future__ import annotations

import io
from typing import Any

import numpy as np

from dap_ros.errors import ImageError
from dap_ros.io.images import pil_to_rgb

# encoding -> (channels, index of R, G, B in a pixel; None = grey)
ENCODINGS: dict[str, tuple[int, tuple[int, int, int] | None]] = {
    "rgb8": (3, (0, 1, 2)),
    "bgr8": (3, (2, 1, 0)),
    "rgba8": (4, (0, 1, 2)),
    "bgra8": (4, (2, 1, 0)),
    "mono8": (1, None),
}
# What image_transport's "compressed" plugin sends (docs/ros_node.md); Pillow's other decoders
# (GIF, BMP, TIFF, WebP, ...) are never tried.
COMPRESSED_FORMATS = ("JPEG", "PNG")


class InputRejected(ImageError):
    """A frame that cannot be processed; ``kind`` groups the reason for counting and logging."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


# --- input ----------------------------------------------------------------------------------

MIN_PANORAMA_HEIGHT = 8  # pixels: smaller "panoramas" are test patterns or corrupt headers


def check_frame_size(width: int, height: int, max_width: int, panorama: bool = True) -> None:
    """Reject empty, too large and (``panorama``) non-2:1 frames before any pixel is touched.
    Fisheye frames are checked against their calibration by the predictor instead, after decoding:
    their height is bounded here too (2 x max_input_width: a top_bottom dual-fisheye frame is 1:2)."""
    if width <= 0 or height <= 0:
        raise InputRejected("empty", f"image has zero size ({width}x{height})")
    if width > max_width:
        raise InputRejected(
            "too_large", f"image {width}x{height} is wider than max_input_width={max_width} pixels"
        )
    if height > 2 * max_width:
        raise InputRejected(
            "too_large", f"image {width}x{height} is taller than 2 x max_input_width={max_width} pixels"
        )
    # stitchers emit exact 2:1; one pixel of rounding is allowed, which only means something for
    # images of a real size (a 3x1 frame is "within one pixel" of 2:1)
    if panorama and (abs(width - 2 * height) > 1 or height < MIN_PANORAMA_HEIGHT):
        raise InputRejected(
            "not_erp", f"image {width}x{height} is not a 2:1 equirectangular panorama"
            + (f" (at least {2 * MIN_PANORAMA_HEIGHT}x{MIN_PANORAMA_HEIGHT})" if height < MIN_PANORAMA_HEIGHT else "")
        )


def image_to_rgb(msg: Any, max_width: int, panorama: bool = True) -> np.ndarray:
    """sensor_msgs/Image -> (H, W, 3) uint8 RGB. A view into ``msg.data`` where possible.

    Handles rows padded beyond width * channels (``step``), BGR/alpha orders and grey.
    """
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    encoding = msg.encoding.strip().lower()
    if encoding not in ENCODINGS:
        raise InputRejected(
            "encoding", f"unsupported encoding '{msg.encoding}' (use {', '.join(ENCODINGS)})"
        )
    check_frame_size(width, height, max_width, panorama)
    channels, order = ENCODINGS[encoding]
    row_bytes = width * channels
    if step < row_bytes:
        raise InputRejected("bad_step", f"step {step} < width x channels = {row_bytes} ({encoding})")
    data = np.frombuffer(msg.data, dtype=np.uint8)
    # the last row needs only row_bytes, not a full step (some drivers trim the final padding)
    needed = step * (height - 1) + row_bytes
    if data.size < needed:
        raise InputRejected(
            "short_data", f"data has {data.size} bytes, {width}x{height} {encoding} step {step} needs {needed}"
        )
    if step == row_bytes:
        pixels = data[: height * row_bytes].reshape(height, width, channels)
    else:
        pixels = np.lib.stride_tricks.as_strided(
            data, shape=(height, width, channels), strides=(step, channels, 1), writeable=False
        )
    if order is None:
        return np.broadcast_to(pixels, (height, width, 3))
    if order == (0, 1, 2):
        return pixels if channels == 3 else pixels[..., :3]
    return pixels[..., 2::-1]  # B, G, R[, A] -> R, G, B (a view)


def compressed_to_rgb(msg: Any, max_width: int, panorama: bool = True) -> np.ndarray:
    """sensor_msgs/CompressedImage (JPEG or PNG only) -> (H, W, 3) uint8 RGB, checked before
    decoding; 16-bit PNGs are scaled to 8 bit as the command line reads files (:func:`pil_to_rgb`)."""
    from PIL import Image as PILImage
    from PIL import UnidentifiedImageError

    if len(msg.data) == 0:
        raise InputRejected("empty", "compressed image has no data")
    if "compresseddepth" in msg.format.lower():
        raise InputRejected("encoding", f"compressed format '{msg.format}' is a depth image, not colour")
    try:
        image = PILImage.open(io.BytesIO(memoryview(msg.data)), formats=COMPRESSED_FORMATS)
        width, height = image.size  # header only: size checked before the pixels are decoded
    except PILImage.DecompressionBombError as exc:  # Pillow's own, larger budget: still too large
        raise InputRejected("too_large", f"compressed image ({msg.format!r}): {exc}") from None
    except UnidentifiedImageError:
        raise InputRejected("corrupt", f"compressed image ({msg.format!r}) is not a readable "
                                       f"{' or '.join(COMPRESSED_FORMATS)} image (the formats accepted)") from None
    except Exception as exc:  # noqa: BLE001 - any parser failure means corrupt data
        raise InputRejected("corrupt", f"compressed image ({msg.format!r}) cannot be read: {exc}") from None
    check_frame_size(width, height, max_width, panorama)
    try:
        image.load()
    except Exception as exc:  # noqa: BLE001 - truncated or corrupt stream
        raise InputRejected("corrupt", f"compressed image ({msg.format!r}) is corrupt: {exc}") from None
    try:
        return pil_to_rgb(image)
    except ImageError as exc:
        raise InputRejected("encoding", f"compressed image ({msg.format!r}): {exc}") from None


def check_stamp(msg: Any) -> None:
    """Reject a frame stamped before 1970: ROS time cannot hold it, so no output could carry it."""
    sec = int(msg.header.stamp.sec)
    if sec < 0:
        raise InputRejected("bad_stamp", f"header stamp {sec} s is negative (before 1970)")
