"""The node's output messages, byte for byte (no DDS needed).

The oracle is rclpy's own serializer: each expected message is built field by field from numpy
arrays computed here from the public geometry, then ``serialize_message``d; what the node publishes
(and eval-bag writes) must be those bytes. Only CDR's alignment padding may differ (rclpy's
serializer leaves it uninitialised), so messages are compared as their length plus every field.
"""
from __future__ import annotations

import array
import math

import numpy as np
import pytest
from builtin_interfaces.msg import Time
from rclpy.serialization import deserialize_message, serialize_message
from sensor_msgs.msg import Image, LaserScan, PointCloud2, PointField
from std_msgs.msg import Header

from dap_ros.geometry import laser_scan, range_to_points
from dap_ros.io.colorize import colorize_range
from dap_ros.pipeline import DepthResult
from dap_ros.ros import messages as M
from dap_ros.ros.outputs import OUTPUTS, OutputBuilder, enabled_outputs
from dap_ros.ros.params import NodeParams

HEADER = Header(stamp=Time(sec=5, nanosec=7), frame_id="camera_optical")
TYPES = {"depth": Image, "range_mask": Image, "colorized": Image, "points": PointCloud2, "scan": LaserScan}


def assert_same_message(cdr: bytes, expected: bytes, name: str, note: str = "") -> None:
    assert len(cdr) == len(expected), name + note
    assert deserialize_message(cdr, TYPES[name]) == deserialize_message(expected, TYPES[name]), name + note


def _image(pixels: np.ndarray, encoding: str) -> bytes:
    channels = pixels.shape[2] if pixels.ndim == 3 else 1
    msg = Image(header=HEADER, height=pixels.shape[0], width=pixels.shape[1], encoding=encoding,
                is_bigendian=False, step=pixels.shape[1] * channels * pixels.itemsize, data=pixels.tobytes())
    return serialize_message(msg)


def _cloud(depth: np.ndarray, rgb: np.ndarray | None, p: NodeParams) -> bytes:
    s = p.points_stride
    xyz = range_to_points(depth, p.azimuth_offset_rad)[::s, ::s]
    sub = depth[::s, ::s]
    keep = np.isfinite(sub) & (sub >= p.points_min_range) & (sub <= p.points_max_range)
    fields = 3 if rgb is None else 4
    record = np.zeros(sub.shape + (fields,), np.float32)
    record[..., :3] = np.where(keep[..., None], xyz, np.nan) if p.points_organized else xyz
    if rgb is not None:
        c = rgb[::s, ::s].astype(np.uint32)
        record.view(np.uint32)[..., 3] = (c[..., 0] << 16) | (c[..., 1] << 8) | c[..., 2]
    if not p.points_organized:
        record = record[keep]
    height, width = record.shape[:2] if p.points_organized else (1, record.shape[0])
    names = ("x", "y", "z", "rgb")[:fields]
    msg = PointCloud2(header=HEADER, height=height, width=width, is_bigendian=False,
                      fields=[PointField(name=n, offset=4 * i, datatype=PointField.FLOAT32, count=1)
                              for i, n in enumerate(names)],
                      point_step=4 * fields, row_step=4 * fields * width, is_dense=not p.points_organized,
                      data=record.tobytes())
    return serialize_message(msg)


def _scan(depth: np.ndarray, p: NodeParams) -> bytes:
    spec = p.scan_spec()
    msg = LaserScan(header=HEADER, angle_min=-math.pi, angle_max=spec.angle_max, angle_increment=spec.angle_increment,
                    range_min=spec.range_min, range_max=spec.range_max,
                    ranges=array.array("f", laser_scan(depth, spec, p.azimuth_offset_rad).tobytes()))
    return serialize_message(msg)


def _frame(seed: int, far: float = 0.2) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    depth = rng.uniform(0.5, 20.0, (24, 48)).astype(np.float32)
    depth[rng.random(depth.shape) < far] = np.inf
    depth[3, 3] = np.nan
    return depth, rng.integers(0, 256, (24, 48, 3), dtype=np.uint8)


PARAMS = [
    {},
    {"points.organized": True, "points.rgb": False, "points.stride": 1},
    {"azimuth_offset_deg": 30.0, "points.stride": 3, "points.max_range": 15.0, "scan.angle_increment_deg": 2.0},
    {"points.min_range": 0.2, "scan.elevation_min_deg": -30.0, "max_range": 25.0},
]


@pytest.mark.parametrize("values", PARAMS, ids=["defaults", "organized", "yawed", "bands"])
def test_every_output_is_the_serialized_message(values):
    p = NodeParams.from_values(values)
    builder = OutputBuilder()
    for seed, far in ((0, 0.0), (1, 0.3), (2, 1.0)):  # no point dropped, some, all (an empty cloud)
        depth, rgb = _frame(seed, far)
        frame = builder.begin(p, HEADER, depth.shape, OUTPUTS)
        frame.range_out[...] = depth  # what the predictor does
        result = DepthResult(frame.range_out, np.isfinite(depth), {}, rgb)
        expected = {
            "depth": _image(depth, "32FC1"),
            "range_mask": _image(np.isfinite(depth).astype(np.uint8) * 255, "mono8"),
            "colorized": _image(np.ascontiguousarray(colorize_range(depth, max_range=p.max_range,
                                                                    min_range=0.3)[..., ::-1]), "bgr8"),
            "points": _cloud(depth, rgb if p.points_rgb else None, p),
            "scan": _scan(depth, p),
        }
        for name in OUTPUTS:
            message = frame.build(name, result)
            assert_same_message(message.cdr.tobytes(), expected[name], name, f" (frame {seed})")
            assert message.payload.size == 0 or message.payload.ctypes.data % M.CdrBuffers.ALIGN == 0, name


def test_depth_is_copied_when_the_predictor_did_not_write_it_in_place():
    p = NodeParams.defaults()
    depth, rgb = _frame(4)
    frame = OutputBuilder().begin(p, HEADER, depth.shape, ("depth",))
    frame.range_out[...] = -1.0
    message = frame.build("depth", DepthResult(depth, np.isfinite(depth), {}, rgb))
    assert_same_message(message.cdr.tobytes(), _image(depth, "32FC1"), "depth")


def test_frames_reuse_their_buffers():
    p = NodeParams.from_values({"publish_colorized": True})
    builder = OutputBuilder()
    addresses = []
    for seed, far in ((0, 0.0), (1, 0.3), (2, 0.6)):
        depth, rgb = _frame(seed, far)
        frame = builder.begin(p, HEADER, depth.shape, OUTPUTS)
        result = DepthResult(depth, np.isfinite(depth), {}, rgb)
        for name in OUTPUTS:
            frame.build(name, result)
        addresses.append([builder.buffers.get(name, 0).ctypes.data for name in OUTPUTS])
    assert addresses[0] == addresses[1] == addresses[2]  # no new storage frame after frame


def test_enabled_outputs_follow_the_parameters():
    assert enabled_outputs(NodeParams.defaults()) == ("points", "depth", "range_mask", "scan", "colorized")
    off = NodeParams.from_values({"points.enable": False, "scan.enable": False, "publish_colorized": False})
    assert enabled_outputs(off) == ("depth", "range_mask")


def test_cdr_splice_refuses_a_template_with_data():
    template = Image(encoding="mono8", height=1, width=2, step=2, data=array.array("B", [1, 2]))
    with pytest.raises(ValueError, match="empty data"):
        M.cdr_message(template, 2)


def test_header_from_nanoseconds():
    assert M.header(5_000_000_007, "cam") == Header(stamp=Time(sec=5, nanosec=7), frame_id="cam")
