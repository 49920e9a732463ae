"""sensor_msgs <-> numpy without cv_bridge or sensor_msgs_py, vectorized and copy-aware.

Why ``array.array``: rosidl's uint8[] setters keep an ``array.array('B')`` as is, turn ``bytes``
into one with a memcpy, but walk a numpy array element by element (~80 ms for 1.5 MB, DESIGN.md
section 5). ``_uint8_array`` fills one straight from the numpy buffer: a single memcpy, then the
serializer's own copy. Reading goes the other way for free: ``np.frombuffer(msg.data)``.

Decoding raises :class:`InputRejected` with a short ``kind`` so the node can count and rate-limit
log each kind of bad input separately.
"""
from __future__ import annotations

import array
import io
import math
import sys
from typing import Any

import numpy as np

from dap_ros.errors import ImageError
from dap_ros.geometry import LaserScanSpec, ray_directions
from dap_ros.io.colorize import colorize_range

# encoding -> (channels, index of R, G, B in a pixel; None = grey)
ENCODINGS: dict[str, tuple[int, tuple[int, int, int] | None]] = {
    "rgb8": (3, (0, 1, 2)),
    "bgr8": (3, (2, 1, 0)),
    "rgba8": (4, (0, 1, 2)),
    "bgra8": (4, (2, 1, 0)),
    "mono8": (1, None),
}
_BIG_ENDIAN = sys.byteorder == "big"
_FLOAT32 = 7  # sensor_msgs/PointField.FLOAT32
COLORIZED_MIN_RANGE_M = 0.3  # fixed colour scale (log, 0.3 m .. max_range): no frame-to-frame flicker


class InputRejected(ImageError):
    """A frame that cannot be processed; ``kind`` groups the reason for counting and logging."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


# --- input ----------------------------------------------------------------------------------

def check_erp_size(width: int, height: int, max_width: int) -> None:
    """Reject empty, too large and non-2:1 frames before any pixel is touched."""
    if width <= 0 or height <= 0:
        raise InputRejected("empty", f"image has zero size ({width}x{height})")
    if width > max_width:
        raise InputRejected(
            "too_large", f"image {width}x{height} is wider than max_input_width={max_width} pixels"
        )
    if abs(width - 2 * height) > 1:  # stitchers emit exact 2:1; allow one pixel of rounding
        raise InputRejected(
            "not_erp", f"image {width}x{height} is not a 2:1 equirectangular panorama"
        )


def image_to_rgb(msg: Any, max_width: int) -> np.ndarray:
    """sensor_msgs/Image -> (H, W, 3) uint8 RGB. A view into ``msg.data`` where possible.

    Handles rows padded beyond width * channels (``step``), BGR/alpha orders and grey.
    """
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    encoding = msg.encoding.strip().lower()
    if encoding not in ENCODINGS:
        raise InputRejected(
            "encoding", f"unsupported encoding '{msg.encoding}' (use {', '.join(ENCODINGS)})"
        )
    check_erp_size(width, height, max_width)
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


def compressed_to_rgb(msg: Any, max_width: int) -> np.ndarray:
    """sensor_msgs/CompressedImage (jpeg or png) -> (H, W, 3) uint8 RGB, checked before decoding."""
    from PIL import Image as PILImage

    if len(msg.data) == 0:
        raise InputRejected("empty", "compressed image has no data")
    if "compresseddepth" in msg.format.lower():
        raise InputRejected("encoding", f"compressed format '{msg.format}' is a depth image, not colour")
    try:
        image = PILImage.open(io.BytesIO(memoryview(msg.data)))
        width, height = image.size  # header only: size checked before the pixels are decoded
    except Exception as exc:  # noqa: BLE001 - any parser failure means corrupt data
        raise InputRejected("corrupt", f"compressed image ({msg.format!r}) cannot be read: {exc}") from None
    check_erp_size(width, height, max_width)
    try:
        rgb = np.asarray(image.convert("RGB"))
    except Exception as exc:  # noqa: BLE001 - truncated or corrupt stream
        raise InputRejected("corrupt", f"compressed image ({msg.format!r}) is corrupt: {exc}") from None
    return rgb


# --- output ---------------------------------------------------------------------------------

def _uint8_array(values: np.ndarray) -> array.array:
    """One memcpy from a numpy buffer into the array.array a uint8[] field keeps as is."""
    out = array.array("B")
    flat = np.ascontiguousarray(values).reshape(-1).view(np.uint8)  # 1-D bytes view, no copy
    out.frombytes(memoryview(flat))
    return out


def image_msg(header: Any, pixels: np.ndarray, encoding: str) -> Any:
    """(H, W[, C]) numpy array -> sensor_msgs/Image with the given encoding and header."""
    from sensor_msgs.msg import Image

    msg = Image()
    msg.header = header
    msg.height, msg.width = int(pixels.shape[0]), int(pixels.shape[1])
    msg.encoding = encoding
    msg.is_bigendian = _BIG_ENDIAN and pixels.dtype.itemsize > 1
    msg.step = int(pixels.shape[1] * (pixels.shape[2] if pixels.ndim == 3 else 1) * pixels.dtype.itemsize)
    msg.data = _uint8_array(pixels)
    return msg


def depth_msg(header: Any, range_m: np.ndarray) -> Any:
    """32FC1 metres (+Inf beyond range, NaN invalid)."""
    return image_msg(header, range_m.astype(np.float32, copy=False), "32FC1")


def mask_msg(header: Any, in_range: np.ndarray) -> Any:
    """mono8, 255 = within range, 0 = out of range."""
    return image_msg(header, in_range.view(np.uint8) * np.uint8(255), "mono8")


def colorized_msg(header: Any, range_m: np.ndarray, max_range: float) -> Any:
    """bgr8 view of the depth (turbo, log scale from 0.3 m to max_range; +Inf grey, NaN black)."""
    rgb = colorize_range(range_m, max_range=max_range, min_range=COLORIZED_MIN_RANGE_M)
    return image_msg(header, rgb[..., ::-1], "bgr8")


def _point_fields(with_rgb: bool) -> list[Any]:
    from sensor_msgs.msg import PointField

    names = ("x", "y", "z", "rgb") if with_rgb else ("x", "y", "z")
    return [PointField(name=n, offset=4 * i, datatype=_FLOAT32, count=1) for i, n in enumerate(names)]


def pointcloud_record_msg(header: Any, record: np.ndarray, *, with_rgb: bool, organized: bool) -> Any:
    """PointCloud2 around a float32 record array: (N, 3|4) or, organized, (rows, cols, 3|4).

    Fields x, y, z (+ rgb) are float32 at offsets 0, 4, 8 (, 12); rgb is the PCL/RViz packing,
    a uint32 0x00RRGGBB stored in a float32 slot.
    """
    from sensor_msgs.msg import PointCloud2

    height, width = (record.shape[0], record.shape[1]) if organized else (1, record.shape[0])
    msg = PointCloud2()
    msg.header = header
    msg.height, msg.width = int(height), int(width)
    msg.fields = _point_fields(with_rgb)
    msg.is_bigendian = _BIG_ENDIAN
    msg.point_step = 4 * record.shape[-1]
    msg.row_step = msg.point_step * msg.width
    msg.is_dense = not organized  # unorganized clouds hold valid points only
    msg.data = _uint8_array(record)
    return msg


def pointcloud_msg(header: Any, points: np.ndarray, colors: np.ndarray | None, *, organized: bool) -> Any:
    """PointCloud2 from points (N, 3) or (H, W, 3) float32 and optional uint8 colours alike."""
    record = np.empty(points.shape[:-1] + (3 if colors is None else 4,), dtype=np.float32)
    record[..., :3] = points
    if colors is not None:
        rgb = colors.astype(np.uint32)
        record[..., 3] = ((rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]).view(np.float32)
    return pointcloud_record_msg(header, record, with_rgb=colors is not None, organized=organized)


class PointCloudBuilder:
    """Range image (+ RGB) -> PointCloud2 in one pass over a (rows, cols, 3|4) float32 record.

    ``colored_points`` from dap_ros.geometry gathers points, rays and colours separately (three
    fancy-indexing passes); here the strided ray table is cached per (size, stride, yaw offset),
    x, y, z are multiplied straight into the message record, the colours written as bytes into
    the rgb slot, and invalid points removed by one row gather (or set to NaN when organized).
    Same rays and conventions as dap_ros.geometry (DESIGN.md section 3).
    """

    def __init__(self) -> None:
        self._key: tuple | None = None
        self._rays: np.ndarray | None = None

    def rays(self, height: int, width: int, stride: int, azimuth_offset_rad: float) -> np.ndarray:
        """(3, rows, cols) float32: one contiguous plane per axis (fast per-plane multiplies)."""
        key = (height, width, stride, azimuth_offset_rad)
        if key != self._key:
            rays = ray_directions(height, width)[::stride, ::stride].astype(np.float64)
            if azimuth_offset_rad:  # camera yawed by +offset: rotate the rays about +z
                c, s = math.cos(azimuth_offset_rad), math.sin(azimuth_offset_rad)
                x, y = rays[..., 0].copy(), rays[..., 1].copy()
                rays[..., 0], rays[..., 1] = c * x - s * y, s * x + c * y
            planes = np.ascontiguousarray(np.moveaxis(rays, -1, 0), dtype=np.float32)
            self._rays, self._key = planes, key
        return self._rays

    def build(
        self,
        header: Any,
        range_m: np.ndarray,
        rgb: np.ndarray | None,
        *,
        stride: int,
        min_range: float,
        max_range: float,
        azimuth_offset_rad: float = 0.0,
        organized: bool = False,
    ) -> Any:
        """Points with a finite range in [min_range, max_range] of every stride-th row/column."""
        sub = np.ascontiguousarray(range_m[::stride, ::stride], dtype=np.float32)
        rays = self.rays(range_m.shape[0], range_m.shape[1], stride, azimuth_offset_rad)
        with np.errstate(invalid="ignore"):
            keep = (sub >= min_range) & (sub <= max_range)  # NaN compares False
            if math.isinf(max_range):
                keep &= np.isfinite(sub)
        n_fields = 3 if rgb is None else 4
        record = np.empty(sub.shape + (n_fields,), dtype=np.float32)
        with np.errstate(invalid="ignore", over="ignore"):
            for axis in range(3):
                np.multiply(sub, rays[axis], out=record[..., axis])
                if organized:
                    np.copyto(record[..., axis], np.float32(np.nan), where=~keep)
        if rgb is not None:
            slot = record.view(np.uint8)[..., 12:16]  # the rgb float's 4 bytes
            colors = rgb[::stride, ::stride]
            if _BIG_ENDIAN:  # uint32 0x00RRGGBB: bytes 0, R, G, B
                slot[..., 1:] = colors
                slot[..., 0] = 0
            else:  # bytes B, G, R, 0
                slot[..., :3] = colors[..., ::-1]
                slot[..., 3] = 0
        flat = record.reshape(-1, n_fields)
        if not organized and not keep.all():
            # gather whole records as one opaque item each: ~20x faster than flat[keep]
            flat = flat.view(f"V{4 * n_fields}")[:, 0][keep.reshape(-1)].view(np.float32).reshape(-1, n_fields)
        return pointcloud_record_msg(header, record if organized else flat,
                                     with_rgb=rgb is not None, organized=organized)


def points_msg_for(builder: PointCloudBuilder, header: Any, result: Any, p: Any) -> Any:
    """The node's ``points`` message for a DepthResult under NodeParams ``p`` (node and eval-bag)."""
    return builder.build(
        header,
        result.range_m,
        result.rgb if p.points_rgb else None,
        stride=p.points_stride,
        min_range=p.points_min_range,
        max_range=p.points_max_range,
        azimuth_offset_rad=p.azimuth_offset_rad,
        organized=p.points_organized,
    )


def scan_msg(header: Any, ranges: np.ndarray, spec: LaserScanSpec) -> Any:
    """sensor_msgs/LaserScan, 360 degrees from angle_min = -pi, counter-clockwise."""
    from sensor_msgs.msg import LaserScan

    msg = LaserScan()
    msg.header = header
    msg.angle_min = -math.pi
    msg.angle_increment = float(spec.angle_increment)
    msg.angle_max = float(spec.angle_max)
    msg.time_increment = 0.0  # one exposure for the whole panorama
    msg.scan_time = 0.0
    msg.range_min = float(spec.range_min)
    msg.range_max = float(spec.range_max)
    values = array.array("f")
    values.frombytes(memoryview(np.ascontiguousarray(ranges, dtype=np.float32).reshape(-1).view(np.uint8)))
    msg.ranges = values
    return msg
