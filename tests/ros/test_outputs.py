"""Every output of the node through real DDS: types, sizes, stamps, frames, units, semantics."""
from __future__ import annotations

import math

import numpy as np
import pytest
from ros_helpers import ALL_OUTPUTS, rgb_image_msg, send_until_outputs
from sensor_msgs.msg import Image, PointField

from dap_ros.geometry import LaserScanSpec, laser_scan
from dap_ros.ros.client import qos

pytestmark = pytest.mark.ros


def depth_array(msg: Image) -> np.ndarray:
    assert msg.encoding == "32FC1"
    assert msg.step == 4 * msg.width and len(msg.data) == msg.step * msg.height
    assert msg.is_bigendian == (np.dtype("=f4").byteorder == ">")
    return np.frombuffer(msg.data, np.float32).reshape(msg.height, msg.width)


def cloud_array(msg) -> np.ndarray:
    """PointCloud2 -> structured array, checking the layout the node promises."""
    names = [f.name for f in msg.fields]
    assert names in (["x", "y", "z", "rgb"], ["x", "y", "z"])
    for i, f in enumerate(msg.fields):
        assert (f.offset, f.datatype, f.count) == (4 * i, PointField.FLOAT32, 1)
    assert msg.point_step == 4 * len(names) and msg.row_step == msg.point_step * msg.width
    assert len(msg.data) == msg.row_step * msg.height
    dtype = np.dtype({"names": names, "formats": ["<f4"] * len(names), "offsets": [4 * i for i in range(len(names))]})
    return np.frombuffer(msg.data, dtype).reshape(msg.height, msg.width)


def test_every_output_for_the_real_sample(harness, make_node, real_sample):
    node = make_node(points__stride=2, frame_id="")
    harness.subscribe(ALL_OUTPUTS)
    pub = harness.node.create_publisher(Image, "image", qos(depth=10))
    msg, out = send_until_outputs(harness, pub, lambda s: rgb_image_msg(real_sample, s, "cam_link"))

    h, w = real_sample.shape[:2]
    for topic, m in out.items():  # same stamp (checked by the collector) and frame on every output
        assert m.header.frame_id == "cam_link", topic
        assert (m.header.stamp.sec, m.header.stamp.nanosec) == (msg.header.stamp.sec, msg.header.stamp.nanosec)

    depth = depth_array(out["depth"])
    assert depth.shape == (h, w)
    finite = np.isfinite(depth)
    assert not np.isnan(depth).any(), "the model gives finite values; NaN would mean a bug"
    assert np.all(depth[finite] > 0) and np.all(depth[finite] <= node.params.max_range)
    assert np.all(depth[~finite] == np.inf), "out-of-range pixels are +Inf, never 0"

    mask = out["range_mask"]
    assert (mask.encoding, mask.height, mask.width, mask.step) == ("mono8", h, w, w)
    mask_arr = np.frombuffer(mask.data, np.uint8).reshape(h, w)
    assert set(np.unique(mask_arr)) <= {0, 255}
    np.testing.assert_array_equal(mask_arr == 255, finite)

    colorized = out["colorized"]
    assert (colorized.encoding, colorized.height, colorized.width, colorized.step) == ("bgr8", h, w, 3 * w)

    # points: every finite pixel of the stride-2 grid, radial range = depth, colour = input pixel
    cloud = cloud_array(out["points"])
    assert out["points"].height == 1 and out["points"].is_dense
    sub = depth[::2, ::2]
    keep = np.isfinite(sub)
    assert cloud.shape[1] == int(keep.sum()) > 0
    xyz = np.stack([cloud["x"][0], cloud["y"][0], cloud["z"][0]], axis=1)
    np.testing.assert_allclose(np.linalg.norm(xyz, axis=1), sub[keep], rtol=1e-5)
    packed = cloud["rgb"][0].view(np.uint32)
    rgb = np.stack([(packed >> 16) & 255, (packed >> 8) & 255, packed & 255], axis=1).astype(np.uint8)
    np.testing.assert_array_equal(rgb, real_sample[::2, ::2][keep])
    # centre column of the middle row looks forward (+x), REP 103
    v, u = h // 2, w // 2  # both even: on the stride-2 grid
    if np.isfinite(depth[v, u]):
        idx = int(np.count_nonzero(keep[: v // 2])) + int(np.count_nonzero(keep[v // 2, : u // 2]))
        assert xyz[idx, 0] > 0.99 * depth[v, u]

    scan = out["scan"]
    spec = LaserScanSpec(angle_increment=math.radians(0.5), elevation_min_deg=-5.0, elevation_max_deg=5.0,
                         range_min=0.1, range_max=100.0)
    assert scan.angle_min == pytest.approx(-math.pi)
    assert scan.angle_increment == pytest.approx(math.radians(0.5))
    assert len(scan.ranges) == 720
    assert scan.angle_max == pytest.approx(-math.pi + 719 * math.radians(0.5), abs=1e-6)
    assert (scan.range_min, scan.range_max) == pytest.approx((0.1, 100.0))
    np.testing.assert_allclose(np.asarray(scan.ranges, np.float32), laser_scan(depth, spec), rtol=1e-6)


def test_frame_id_override_and_network_output_size(harness, make_node, real_sample):
    node = make_node(frame_id="base_link", output_size="network", points__organized=True, points__rgb=False,
                     points__stride=1, points__max_range=40.0)
    harness.subscribe(ALL_OUTPUTS)
    pub = harness.node.create_publisher(Image, "image", qos(depth=10))
    _, out = send_until_outputs(harness, pub, lambda s: rgb_image_msg(real_sample, s, "cam_link"))
    assert {m.header.frame_id for m in out.values()} == {"base_link"}
    depth = depth_array(out["depth"])
    assert depth.shape == node.predictor.input_size == (64, 128)
    cloud = out["points"]
    assert (cloud.height, cloud.width, cloud.is_dense) == (64, 128, False)
    pts = cloud_array(cloud)
    valid = np.isfinite(depth) & (depth <= 40.0)
    np.testing.assert_array_equal(np.isfinite(pts["x"]), valid)  # NaN where no point (organized)
    np.testing.assert_allclose(np.sqrt(pts["x"] ** 2 + pts["y"] ** 2 + pts["z"] ** 2)[valid], depth[valid], rtol=1e-5)


@pytest.mark.parametrize("encoding,pad", [("bgr8", 0), ("rgba8", 0), ("bgra8", 12), ("mono8", 5), ("rgb8", 3)])
def test_input_encodings_and_row_padding(harness, make_node, encoding, pad):
    rng = np.random.default_rng(1)
    rgb = rng.integers(0, 256, (32, 64, 3), dtype=np.uint8)
    make_node(points__stride=1, mask_threshold=0.01)  # everything in range: one point per pixel
    harness.subscribe(["depth", "points"])
    pub = harness.node.create_publisher(Image, "image", qos(depth=10))
    _, out = send_until_outputs(harness, pub, lambda s: rgb_image_msg(rgb, s, "cam", encoding, pad),
                                ["depth", "points"])
    cloud = cloud_array(out["points"])
    packed = cloud["rgb"][0].view(np.uint32)
    got = np.stack([(packed >> 16) & 255, (packed >> 8) & 255, packed & 255], axis=1).reshape(32, 64, 3)
    expected = np.repeat(rgb[..., :1], 3, axis=2) if encoding == "mono8" else rgb
    np.testing.assert_array_equal(got, expected)


def test_lazy_outputs_are_not_built_without_subscribers(harness, make_node, real_sample):
    node = make_node()
    harness.subscribe(["depth"])
    pub = harness.node.create_publisher(Image, "image", qos(depth=10))
    send_until_outputs(harness, pub, lambda s: rgb_image_msg(real_sample, s), ["depth"])
    # only depth is subscribed: nothing else was built, yet every frame was processed
    assert node.published["depth"] >= 1
    assert all(node.published[key] == 0 for key in ("points", "scan", "colorized", "range_mask")), node.published
    harness.spin_until(lambda: node.stats.snapshot(0.0).processed >= 1, 10.0,
                       "the frame to be counted as processed (after its outputs are published)")
    assert node.stats.snapshot(0.0).rejected == {}
