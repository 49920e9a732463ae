"""Serialized sensor_msgs written in place: the layouts of the node's messages and their CDR framing.

The node publishes its outputs already serialized. rclpy serializes each message with its
variable-length payload field empty (header, sizes, encoding, point fields: the layout stays
rclpy's); :func:`cdr_message` lays that out around an uninitialised payload in a reused buffer
(:class:`CdrBuffers`), and the producer writes the payload there itself (the predictor the depth,
the point-cloud kernel its record). :class:`dap_ros.ros.cdr_publish.CdrPublisher` hands the buffer
to rcl, eval-bag writes the same bytes into its output bag: the payload is never copied in Python.

Why not assign to the message fields: rosidl's uint8[] setter walks a numpy array element by
element (~80 ms for 1.5 MB), and serializing a filled message copies the payload twice more.
"""
from __future__ import annotations

import math
import struct
import sys
from dataclasses import dataclass
from typing import Any

import numpy as np

from dap_ros.geometry import LaserScanSpec

_BIG_ENDIAN = sys.byteorder == "big"
_FLOAT32 = 7  # sensor_msgs/PointField.FLOAT32


@dataclass(frozen=True)
class CdrMessage:
    """A serialized message in a numpy buffer whose payload field is written in place.

    ``cdr``: the whole message (contiguous uint8, what :class:`dap_ros.ros.cdr_publish.CdrPublisher`
    publishes and a bag stores); ``payload``: the uint8 view of its payload bytes, 64-byte aligned.
    """

    cdr: np.ndarray
    payload: np.ndarray

    def data_as(self, dtype: Any, shape: tuple[int, ...]) -> np.ndarray:
        """The payload as a writable typed array (e.g. float32 (H, W) for a 32FC1 image)."""
        return self.payload.view(dtype).reshape(shape)


class CdrBuffers:
    """Reusable storage for serialized messages, one buffer per key (output name).

    A buffer is reused by the next message of the same key: publishing copies the message
    synchronously, so frame N+1 is written only after frame N's copy was taken.
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


def _cdr_parts(template: Any, tail_bytes: int) -> tuple[bytes, bytes, str]:
    """Serialize ``template`` (its payload sequence empty): the bytes before the sequence's length
    field, the ``tail_bytes`` after the sequence, and the byte order ('<' or '>')."""
    from rclpy.serialization import serialize_message

    empty = serialize_message(template)
    split = len(empty) - tail_bytes
    if empty[split - 4:split] != b"\0\0\0\0":
        raise ValueError(f"{type(template).__name__} template does not end with an empty data field")
    order = "<" if empty[1] == 1 else ">"  # encapsulation CDR_LE (0x0001) / CDR_BE (0x0000)
    return empty[: split - 4], empty[split:], order


def cdr_message(
    template: Any,
    payload_nbytes: int,
    *,
    count: int | None = None,
    tail_bytes: int = 0,
    buffers: CdrBuffers | None = None,
    key: str = "",
) -> CdrMessage:
    """``template`` serialized around an uninitialised payload of ``payload_nbytes`` bytes, in
    ``buffers``' storage for ``key`` (a fresh array without ``buffers``); fill ``payload`` next.

    The payload is the last sequence field of the message, followed by ``tail_bytes`` serialized
    bytes (PointCloud2: 1, its is_dense; LaserScan: 4, its empty intensities). ``count``: the
    sequence's element count when its elements are not bytes (float32[]: payload_nbytes / 4).
    """
    head, tail, order = _cdr_parts(template, tail_bytes)
    total = len(head) + 4 + payload_nbytes + len(tail)
    storage = buffers.get(key, total) if buffers is not None else np.empty(total + CdrBuffers.ALIGN, np.uint8)
    data_at = len(head) + 4
    start = -(storage.ctypes.data + data_at) % CdrBuffers.ALIGN  # the payload starts on a cache line
    cdr = storage[start:start + total]
    cdr[: len(head)] = np.frombuffer(head, dtype=np.uint8)
    length = payload_nbytes if count is None else count
    cdr[len(head):data_at] = np.frombuffer(struct.pack(order + "I", length), dtype=np.uint8)
    cdr[data_at + payload_nbytes:] = np.frombuffer(tail, dtype=np.uint8)
    return CdrMessage(cdr=cdr, payload=cdr[data_at:data_at + payload_nbytes])


def header(stamp_ns: int, frame_id: str) -> Any:
    """std_msgs/Header from a stamp in nanoseconds."""
    from builtin_interfaces.msg import Time
    from std_msgs.msg import Header

    return Header(stamp=Time(sec=stamp_ns // 1_000_000_000, nanosec=stamp_ns % 1_000_000_000), frame_id=frame_id)


def image_message(
    header: Any, shape: tuple[int, ...], dtype: Any, encoding: str, buffers: CdrBuffers | None = None, key: str = ""
) -> tuple[CdrMessage, np.ndarray]:
    """A serialized sensor_msgs/Image to be filled in place: (message, its pixels as a writable
    ``shape`` (H, W[, C]) array of ``dtype``). Write every pixel before publishing (not cleared)."""
    from sensor_msgs.msg import Image

    itemsize = np.dtype(dtype).itemsize
    template = Image(header=header, height=int(shape[0]), width=int(shape[1]), encoding=encoding,
                     is_bigendian=_BIG_ENDIAN and itemsize > 1,
                     step=int(shape[1] * (shape[2] if len(shape) == 3 else 1) * itemsize))
    nbytes = int(np.prod(shape)) * itemsize
    message = cdr_message(template, nbytes, buffers=buffers, key=key)
    return message, message.data_as(dtype, shape)


def pointcloud_message(
    header: Any, shape: tuple[int, ...], *, organized: bool, buffers: CdrBuffers | None = None, key: str = "points"
) -> tuple[CdrMessage, np.ndarray]:
    """A serialized sensor_msgs/PointCloud2 around a float32 record array to be filled in place:
    (message, record of ``shape``: (N, 3|4), or (rows, cols, 3|4) when ``organized``).

    Fields x, y, z (+ rgb) are float32 at offsets 0, 4, 8 (, 12); rgb is the PCL/RViz packing, a
    uint32 0x00RRGGBB stored in a float32 slot. An unorganized cloud holds valid points only
    (is_dense); an organized one has NaN points where there is none.
    """
    from sensor_msgs.msg import PointCloud2, PointField

    names = ("x", "y", "z", "rgb")[: shape[-1]]
    height, width = (shape[0], shape[1]) if organized else (1, shape[0])
    point_step = 4 * shape[-1]
    template = PointCloud2(
        header=header, height=int(height), width=int(width), is_bigendian=_BIG_ENDIAN,
        fields=[PointField(name=n, offset=4 * i, datatype=_FLOAT32, count=1) for i, n in enumerate(names)],
        point_step=point_step, row_step=point_step * int(width), is_dense=not organized,
    )
    message = cdr_message(template, 4 * int(np.prod(shape)), tail_bytes=1, buffers=buffers, key=key)  # is_dense
    return message, message.data_as(np.float32, shape)


def scan_message(
    header: Any, spec: LaserScanSpec, buffers: CdrBuffers | None = None, key: str = "scan"
) -> tuple[CdrMessage, np.ndarray]:
    """A serialized sensor_msgs/LaserScan of ``spec``'s beams (360 degrees from angle_min = -pi,
    counter-clockwise, one exposure: no time increment) and its ranges as a writable float32 array."""
    from sensor_msgs.msg import LaserScan

    template = LaserScan(
        header=header, angle_min=-math.pi, angle_max=float(spec.angle_max),
        angle_increment=float(spec.angle_increment), time_increment=0.0, scan_time=0.0,
        range_min=float(spec.range_min), range_max=float(spec.range_max),
    )
    beams = spec.num_beams
    message = cdr_message(template, 4 * beams, count=beams, tail_bytes=4, buffers=buffers, key=key)  # intensities
    return message, message.data_as(np.float32, (beams,))
