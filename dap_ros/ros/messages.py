"""sensor_msgs <-> numpy without cv_bridge or sensor_msgs_py, vectorized and copy-aware.

Why ``array.array``: rosidl's uint8[] setters keep an ``array.array('B')`` as is, turn ``bytes``
into one with a memcpy, but walk a numpy array element by element (~80 ms for 1.5 MB, DESIGN.md
section 5). ``_uint8_array`` fills one straight from the numpy buffer: a single memcpy, then the
serializer's own copy. Reading goes the other way for free: ``np.frombuffer(msg.data)``.

The node publishes its big outputs already serialized and written in place: rclpy serializes
the message with an empty ``data`` field (header, sizes, encoding, point fields: the layout stays
rclpy's), :func:`cdr_message` lays that out around an uninitialised payload in a reused buffer
(:class:`CdrBuffers`), and the producer writes the payload there itself (the predictor the depth,
:class:`PointCloudBuilder` the point record). :class:`dap_ros.ros.cdr_publish.CdrPublisher` hands
the buffer to rcl, so the only copy of the payload is the middleware's. The ``*_cdr`` functions
return the same messages as ``bytes`` (the output bag of ``dap-ros eval-bag``).

Decoding raises :class:`InputRejected` with a short ``kind`` so the node can count and rate-limit
log each kind of bad input separately.
"""
from __future__ import annotations

import array
import io
import math
import struct
import sys
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from dap_ros.errors import ImageError
from dap_ros.geometry import LaserScanSpec, ray_directions
from dap_ros.io.colorize import colorize_range
from dap_ros.ros.env import switched_off

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


def _cdr_parts(template: Any, tail_bytes: int) -> tuple[bytes, bytes, str]:
    """Serialize ``template`` (its uint8[] ``data`` empty): the bytes before ``data``'s length
    field, the bytes after ``data`` (``tail_bytes`` of them) and the byte order ('<' or '>')."""
    from rclpy.serialization import serialize_message

    empty = serialize_message(template)
    split = len(empty) - tail_bytes
    if empty[split - 4:split] != b"\0\0\0\0":
        raise ValueError(f"{type(template).__name__} template does not end with an empty data field")
    order = "<" if empty[1] == 1 else ">"  # encapsulation CDR_LE (0x0001) / CDR_BE (0x0000)
    return empty[: split - 4], empty[split:], order


def with_data_cdr(template: Any, payload: np.ndarray, tail_bytes: int = 0) -> bytes:
    """CDR bytes of ``template`` (a message whose uint8[] ``data`` is empty) with ``payload``'s
    bytes as ``data``; ``tail_bytes``: how many serialized bytes follow ``data`` (PointCloud2:
    1, its is_dense)."""
    head, tail, order = _cdr_parts(template, tail_bytes)
    data = np.ascontiguousarray(payload).reshape(-1).view(np.uint8)  # bytes view, also when empty
    return b"".join((head, struct.pack(order + "I", data.size), memoryview(data), tail))


@dataclass(frozen=True)
class CdrMessage:
    """A serialized message in a numpy buffer whose ``data`` field is written in place.

    ``cdr``: the whole message (contiguous uint8, what :class:`dap_ros.ros.cdr_publish.CdrPublisher`
    publishes); ``payload``: the uint8 view of its ``data`` bytes, 64-byte aligned.
    """

    cdr: np.ndarray
    payload: np.ndarray

    def data_as(self, dtype: Any, shape: tuple[int, ...]) -> np.ndarray:
        """The payload as a writable typed array (e.g. float32 (H, W) for a 32FC1 image)."""
        return self.payload.view(dtype).reshape(shape)


class CdrBuffers:
    """Reusable storage for the node's serialized outputs, one buffer per output.

    A buffer is reused by the next frame's message of the same output: publishing copies the
    message synchronously, so the node writes frame N+1 only after frame N's copy was taken.
    """

    ALIGN = 64

    def __init__(self) -> None:
        self._buffers: dict[str, np.ndarray] = {}

    def get(self, key: str, nbytes: int) -> np.ndarray:
        buffer = self._buffers.get(key)
        if buffer is None or buffer.size < nbytes + self.ALIGN:
            buffer = np.empty(nbytes + self.ALIGN, dtype=np.uint8)
            self._buffers[key] = buffer
        return buffer


def cdr_message(
    template: Any, payload_nbytes: int, *, tail_bytes: int = 0, buffers: CdrBuffers | None = None, key: str = ""
) -> CdrMessage:
    """``template`` serialized around an uninitialised ``data`` of ``payload_nbytes`` bytes, in
    ``buffers``' storage for ``key`` (a fresh array without ``buffers``); fill ``payload`` next."""
    head, tail, order = _cdr_parts(template, tail_bytes)
    total = len(head) + 4 + payload_nbytes + len(tail)
    storage = buffers.get(key, total) if buffers is not None else np.empty(total + CdrBuffers.ALIGN, np.uint8)
    data_at = len(head) + 4
    start = -(storage.ctypes.data + data_at) % CdrBuffers.ALIGN  # the payload starts on a cache line
    cdr = storage[start:start + total]
    cdr[: len(head)] = np.frombuffer(head, dtype=np.uint8)
    cdr[len(head):data_at] = np.frombuffer(struct.pack(order + "I", payload_nbytes), dtype=np.uint8)
    cdr[data_at + payload_nbytes:] = np.frombuffer(tail, dtype=np.uint8)
    return CdrMessage(cdr=cdr, payload=cdr[data_at:data_at + payload_nbytes])


def _image_template(header: Any, shape: tuple[int, ...], dtype: Any, encoding: str) -> Any:
    """sensor_msgs/Image describing pixels of ``shape`` (H, W[, C]) and ``dtype``, no data yet."""
    from sensor_msgs.msg import Image

    itemsize = np.dtype(dtype).itemsize
    msg = Image()
    msg.header = header
    msg.height, msg.width = int(shape[0]), int(shape[1])
    msg.encoding = encoding
    msg.is_bigendian = _BIG_ENDIAN and itemsize > 1
    msg.step = int(shape[1] * (shape[2] if len(shape) == 3 else 1) * itemsize)
    return msg


def image_msg(header: Any, pixels: np.ndarray, encoding: str) -> Any:
    """(H, W[, C]) numpy array -> sensor_msgs/Image with the given encoding and header."""
    msg = _image_template(header, pixels.shape, pixels.dtype, encoding)
    msg.data = _uint8_array(pixels)
    return msg


def image_cdr(header: Any, pixels: np.ndarray, encoding: str) -> bytes:
    """The serialized form of ``image_msg(header, pixels, encoding)``, with one copy of the pixels."""
    return with_data_cdr(_image_template(header, pixels.shape, pixels.dtype, encoding), pixels)


def image_message(
    header: Any, shape: tuple[int, ...], dtype: Any, encoding: str, buffers: CdrBuffers | None = None, key: str = ""
) -> tuple[CdrMessage, np.ndarray]:
    """A serialized Image to be filled in place: (message, its pixels as a writable ``shape``
    array of ``dtype``). Write every pixel before publishing (the storage is not cleared)."""
    nbytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
    message = cdr_message(_image_template(header, shape, dtype, encoding), nbytes, buffers=buffers, key=key)
    return message, message.data_as(dtype, shape)


def _depth_pixels(range_m: np.ndarray) -> np.ndarray:
    return range_m.astype(np.float32, copy=False)


def _colorized_pixels(range_m: np.ndarray, max_range: float) -> np.ndarray:
    return colorize_range(range_m, max_range=max_range, min_range=COLORIZED_MIN_RANGE_M)[..., ::-1]


def depth_msg(header: Any, range_m: np.ndarray) -> Any:
    """32FC1 metres (+Inf beyond range, NaN invalid)."""
    return image_msg(header, _depth_pixels(range_m), "32FC1")


def depth_cdr(header: Any, range_m: np.ndarray) -> bytes:
    return image_cdr(header, _depth_pixels(range_m), "32FC1")


def depth_message(header: Any, shape: tuple[int, int], buffers: CdrBuffers | None = None) -> tuple[CdrMessage, np.ndarray]:
    """The depth image to be filled in place (the predictor writes its range straight into it)."""
    return image_message(header, shape, np.float32, "32FC1", buffers, "depth")


def mask_msg(header: Any, in_range: np.ndarray) -> Any:
    """mono8, 255 = within range, 0 = out of range."""
    return image_msg(header, in_range.view(np.uint8) * np.uint8(255), "mono8")


def mask_message(header: Any, in_range: np.ndarray, buffers: CdrBuffers | None = None) -> CdrMessage:
    message, pixels = image_message(header, in_range.shape, np.uint8, "mono8", buffers, "range_mask")
    np.multiply(in_range.view(np.uint8), np.uint8(255), out=pixels)
    return message


def mask_cdr(header: Any, in_range: np.ndarray) -> bytes:
    return mask_message(header, in_range).cdr.tobytes()


def colorized_msg(header: Any, range_m: np.ndarray, max_range: float) -> Any:
    """bgr8 view of the depth (turbo, log scale from 0.3 m to max_range; +Inf grey, NaN black)."""
    return image_msg(header, _colorized_pixels(range_m, max_range), "bgr8")


def colorized_message(header: Any, range_m: np.ndarray, max_range: float, buffers: CdrBuffers | None = None) -> CdrMessage:
    message, pixels = image_message(header, range_m.shape + (3,), np.uint8, "bgr8", buffers, "colorized")
    np.copyto(pixels, _colorized_pixels(range_m, max_range))
    return message


def colorized_cdr(header: Any, range_m: np.ndarray, max_range: float) -> bytes:
    return image_cdr(header, _colorized_pixels(range_m, max_range), "bgr8")


def _point_fields(with_rgb: bool) -> list[Any]:
    from sensor_msgs.msg import PointField

    names = ("x", "y", "z", "rgb") if with_rgb else ("x", "y", "z")
    return [PointField(name=n, offset=4 * i, datatype=_FLOAT32, count=1) for i, n in enumerate(names)]


def _pointcloud_template(header: Any, shape: tuple[int, ...], *, with_rgb: bool, organized: bool) -> Any:
    """PointCloud2 describing a float32 record array of ``shape``: (N, 3|4) or, organized,
    (rows, cols, 3|4)."""
    from sensor_msgs.msg import PointCloud2

    height, width = (shape[0], shape[1]) if organized else (1, shape[0])
    msg = PointCloud2()
    msg.header = header
    msg.height, msg.width = int(height), int(width)
    msg.fields = _point_fields(with_rgb)
    msg.is_bigendian = _BIG_ENDIAN
    msg.point_step = 4 * shape[-1]
    msg.row_step = msg.point_step * msg.width
    msg.is_dense = not organized  # unorganized clouds hold valid points only
    return msg


def pointcloud_record_msg(header: Any, record: np.ndarray, *, with_rgb: bool, organized: bool) -> Any:
    """PointCloud2 around a float32 record array: (N, 3|4) or, organized, (rows, cols, 3|4).

    Fields x, y, z (+ rgb) are float32 at offsets 0, 4, 8 (, 12); rgb is the PCL/RViz packing,
    a uint32 0x00RRGGBB stored in a float32 slot.
    """
    msg = _pointcloud_template(header, record.shape, with_rgb=with_rgb, organized=organized)
    msg.data = _uint8_array(record)
    return msg


def pointcloud_msg(header: Any, points: np.ndarray, colors: np.ndarray | None, *, organized: bool) -> Any:
    """PointCloud2 from points (N, 3) or (H, W, 3) float32 and optional uint8 colours alike."""
    record = np.empty(points.shape[:-1] + (3 if colors is None else 4,), dtype=np.float32)
    record[..., :3] = points
    if colors is not None:
        pack_rgb(colors, record.view(np.uint32)[..., 3])
    return pointcloud_record_msg(header, record, with_rgb=colors is not None, organized=organized)


def pack_rgb(colors: np.ndarray, out: np.ndarray) -> None:
    """``out`` (uint32, colors' shape without channels) <- 0x00RRGGBB of uint8 RGB ``colors``.

    Fast path: when each pixel's channel bytes are adjacent and rows follow each other (rgb8, bgr8,
    rgba8, bgra8 frames, also every n-th pixel of one), read the 4 bytes from each pixel's first byte as one
    little-endian word (R G B x -> byte-swap, shift; B G R x -> mask): 2.6x faster than copying the
    three channels byte by byte. The last row takes the plain path, because for 3-byte pixels the
    4th byte of its last pixel may lie past the end of the buffer.
    """
    rows = colors.shape[0] if colors.ndim == 3 else 0
    s_row, s_px, s_ch = colors.strides if colors.ndim == 3 else (0, 0, 0)
    adjacent = abs(s_ch) == 1 and s_px >= 3 and s_row >= s_px * colors.shape[1 if rows else 0]
    if colors.dtype == np.uint8 and colors.shape[-1:] == (3,) and rows > 1 and adjacent:
        first = colors if s_ch == 1 else colors[..., ::-1]  # a view starting at each pixel's byte 0
        quads = np.lib.stride_tricks.as_strided(first, shape=(rows - 1, colors.shape[1], 4), strides=(s_row, s_px, 1))
        words = np.empty(quads.shape[:2], dtype="<u4")
        np.copyto(words, quads.view("<u4")[..., 0])  # unaligned reads once, then aligned work
        if s_ch == 1:  # R G B x -> 0x00RRGGBB
            words.byteswap(inplace=True)
            np.right_shift(words, 8, out=out[:-1])
        else:  # B G R x
            np.bitwise_and(words, 0x00FFFFFF, out=out[:-1])
        colors, out = colors[-1:], out[-1:]
    np.left_shift(colors[..., 0], 16, out=out, dtype=np.uint32)
    out |= colors[..., 1].astype(np.uint32) << 8
    out |= colors[..., 2]


_point_kernel: Any = None  # dap_ros.ros.cloud_jit once imported; False when numba is missing


def point_kernel() -> Any:
    """The compiled point-cloud kernels (``dap_ros.ros.cloud_jit``), or None: numba is not
    installed (the ``fast`` extra) or ``DAP_ROS_JIT`` is 0. The numpy path gives the same bytes."""
    global _point_kernel
    if switched_off("DAP_ROS_JIT"):
        return None
    if _point_kernel is None:
        try:
            from dap_ros.ros import cloud_jit

            _point_kernel = cloud_jit
        except ImportError:
            _point_kernel = False
    return _point_kernel or None


class PointCloudBuilder:
    """Range image (+ RGB) -> PointCloud2 in one pass over a (rows, cols, 3|4) float32 record.

    ``colored_points`` from dap_ros.geometry gathers points, rays and colours separately (three
    fancy-indexing passes); here the strided ray table is cached per (size, stride, yaw offset),
    x, y, z are multiplied straight into the record, the colours packed into the rgb slot
    (:func:`pack_rgb`), and invalid points removed by one row gather (or set to NaN when
    organized). Same rays and conventions as dap_ros.geometry (DESIGN.md section 3).
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

    def record(
        self,
        range_m: np.ndarray,
        rgb: np.ndarray | None,
        *,
        stride: int,
        min_range: float,
        max_range: float,
        azimuth_offset_rad: float = 0.0,
        organized: bool = False,
        allocate: Callable[[tuple[int, ...]], np.ndarray] | None = None,
    ) -> np.ndarray:
        """The float32 point record: (N, 3|4) of the points with a finite range in
        [min_range, max_range] among every stride-th row/column, or (rows, cols, 3|4) with NaN
        points when ``organized``.

        ``allocate(shape)`` supplies the writable float32 array the record is written into (a
        message's payload); by default a new array.
        """
        rays = self.rays(range_m.shape[0], range_m.shape[1], stride, azimuth_offset_rad)
        allocate = allocate or (lambda shape: np.empty(shape, dtype=np.float32))
        kernel = point_kernel()
        if kernel is not None and range_m.dtype == np.float32:
            return kernel.point_record(range_m, rgb, rays, stride=stride, min_range=min_range, max_range=max_range,
                                       organized=organized, allocate=allocate)
        sub = np.ascontiguousarray(range_m[::stride, ::stride], dtype=np.float32)
        with np.errstate(invalid="ignore"):
            keep = (sub >= min_range) & (sub <= max_range)  # NaN compares False
            if math.isinf(max_range):
                keep &= np.isfinite(sub)
        n_fields = 3 if rgb is None else 4
        count = sub.size if organized else int(np.count_nonzero(keep))
        full = organized or count == sub.size  # written straight into the output
        grid_shape = sub.shape + (n_fields,)
        record = allocate(grid_shape if organized else (count, n_fields)) if full else np.empty(grid_shape, np.float32)
        record = record.reshape(grid_shape)
        with np.errstate(invalid="ignore", over="ignore"):
            for axis in range(3):
                np.multiply(sub, rays[axis], out=record[..., axis])
                if organized:
                    np.copyto(record[..., axis], np.float32(np.nan), where=~keep)
        if rgb is not None:
            pack_rgb(rgb[::stride, ::stride], record.view(np.uint32)[..., 3])
        if organized:
            return record
        if full:
            return record.reshape(-1, n_fields)
        # gather whole records as one opaque item each: ~20x faster than a float gather
        out = allocate((count, n_fields))
        item = f"V{4 * n_fields}"
        np.compress(keep.reshape(-1), record.reshape(-1, n_fields).view(item)[:, 0], axis=0, out=out.view(item)[:, 0])
        return out

    def build(self, header: Any, range_m: np.ndarray, rgb: np.ndarray | None, *, organized: bool = False,
              **options: Any) -> Any:
        """PointCloud2 message of :meth:`record` (same keyword options)."""
        record = self.record(range_m, rgb, organized=organized, **options)
        return pointcloud_record_msg(header, record, with_rgb=rgb is not None, organized=organized)

    def build_cdr(self, header: Any, range_m: np.ndarray, rgb: np.ndarray | None, *, organized: bool = False,
                  **options: Any) -> bytes:
        """The serialized PointCloud2 of :meth:`record` (same keyword options)."""
        return self.build_message(header, range_m, rgb, organized=organized, **options).cdr.tobytes()

    def build_message(self, header: Any, range_m: np.ndarray, rgb: np.ndarray | None, *, organized: bool = False,
                      buffers: CdrBuffers | None = None, **options: Any) -> CdrMessage:
        """The serialized PointCloud2 of :meth:`record`, the record written straight into the
        message (in ``buffers``' storage for "points" when given)."""
        made: list[CdrMessage] = []

        def into_message(shape: tuple[int, ...]) -> np.ndarray:
            template = _pointcloud_template(header, shape, with_rgb=rgb is not None, organized=organized)
            nbytes = 4 * int(np.prod(shape))
            made.append(cdr_message(template, nbytes, tail_bytes=1, buffers=buffers, key="points"))  # is_dense
            return made[-1].data_as(np.float32, shape)

        self.record(range_m, rgb, organized=organized, allocate=into_message, **options)
        return made[-1]


def _points_options(result: Any, p: Any) -> dict[str, Any]:
    return dict(
        rgb=result.rgb if p.points_rgb else None,
        stride=p.points_stride,
        min_range=p.points_min_range,
        max_range=p.points_max_range,
        azimuth_offset_rad=p.azimuth_offset_rad,
        organized=p.points_organized,
    )


def points_cdr_for(builder: PointCloudBuilder, header: Any, result: Any, p: Any) -> bytes:
    """The node's serialized ``points`` message as bytes (eval-bag's output bag)."""
    return builder.build_cdr(header, result.range_m, **_points_options(result, p))


def points_message_for(
    builder: PointCloudBuilder, header: Any, result: Any, p: Any, buffers: CdrBuffers | None = None
) -> CdrMessage:
    """The node's ``points`` message, built in place (what it publishes)."""
    return builder.build_message(header, result.range_m, buffers=buffers, **_points_options(result, p))


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
