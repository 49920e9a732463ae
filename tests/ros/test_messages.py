"""numpy <-> sensor_msgs conversions (no DDS needed): encodings, padding, rejections, layouts."""
from __future__ import annotations

import array
import io
import math

import numpy as np
import pytest
from builtin_interfaces.msg import Time
from sensor_msgs.msg import CompressedImage
from std_msgs.msg import Header

from dap_ros.errors import ConfigError
from dap_ros.geometry import LaserScanSpec, colored_points, range_to_points
from dap_ros.ros import messages as M
from dap_ros.ros.worker import LatestSlot
from ros_helpers import rgb_image_msg

RGB = np.random.default_rng(0).integers(0, 256, (16, 32, 3), dtype=np.uint8)
STAMP = Time(sec=5, nanosec=7)


@pytest.mark.parametrize("encoding", ["rgb8", "bgr8", "rgba8", "bgra8", "mono8"])
@pytest.mark.parametrize("pad", [0, 1, 13])
def test_image_to_rgb_every_encoding_with_row_padding(encoding, pad):
    msg = rgb_image_msg(RGB, STAMP, encoding=encoding, pad=pad)
    got = M.image_to_rgb(msg, max_width=4096)
    expected = np.repeat(RGB[..., :1], 3, axis=2) if encoding == "mono8" else RGB
    assert got.shape == (16, 32, 3) and got.dtype == np.uint8
    np.testing.assert_array_equal(got, expected)


def test_last_row_without_padding_is_accepted():
    msg = rgb_image_msg(RGB, STAMP, pad=4)
    msg.data = array.array("B", bytes(msg.data)[:-4])  # driver trimmed the final row's padding
    np.testing.assert_array_equal(M.image_to_rgb(msg, 4096), RGB)


@pytest.mark.parametrize("change,kind", [
    ({"encoding": "16UC1"}, "encoding"),
    ({"step": 10}, "bad_step"),
    ({"data": array.array("B", bytes(100))}, "short_data"),
    ({"width": 16, "step": 48}, "not_erp"),
    ({"width": 0, "height": 0}, "empty"),
    ({"width": 7680, "height": 3840, "step": 7680 * 3}, "too_large"),
])
def test_bad_images_are_rejected_by_kind(change, kind):
    msg = rgb_image_msg(RGB, STAMP)
    for key, value in change.items():
        setattr(msg, key, value)
    with pytest.raises(M.InputRejected) as info:
        M.image_to_rgb(msg, max_width=4096)
    assert info.value.kind == kind


def test_compressed_decoding_and_size_check_before_decoding():
    from PIL import Image as PILImage

    buffer = io.BytesIO()
    PILImage.fromarray(RGB).save(buffer, format="PNG")
    msg = CompressedImage(format="png", data=buffer.getvalue())
    np.testing.assert_array_equal(M.compressed_to_rgb(msg, 4096), RGB)
    with pytest.raises(M.InputRejected, match="max_input_width") as info:
        M.compressed_to_rgb(msg, max_width=16)
    assert info.value.kind == "too_large"
    with pytest.raises(M.InputRejected) as info:
        M.compressed_to_rgb(CompressedImage(format="jpeg", data=b"garbage"), 4096)
    assert info.value.kind == "corrupt"


def test_depth_image_layout_and_bytes():
    depth = np.random.default_rng(0).random((960, 1920), dtype=np.float32)
    msg = M.depth_msg(Header(stamp=STAMP, frame_id="f"), depth)
    assert (msg.encoding, msg.height, msg.width, msg.step) == ("32FC1", 960, 1920, 7680)
    np.testing.assert_array_equal(np.frombuffer(msg.data, np.float32).reshape(960, 1920), depth)


def test_pointcloud_layout_and_packed_rgb():
    points = np.array([[1.0, 2.0, 3.0], [-1.0, 0.5, 0.0]], np.float32)
    colors = np.array([[255, 0, 1], [10, 20, 30]], np.uint8)
    msg = M.pointcloud_msg(Header(), points, colors, organized=False)
    assert (msg.height, msg.width, msg.point_step, msg.row_step, msg.is_dense) == (1, 2, 16, 32, True)
    raw = np.frombuffer(msg.data, np.float32).reshape(2, 4)
    np.testing.assert_array_equal(raw[:, :3], points)
    assert list(raw[:, 3].view(np.uint32)) == [0xFF0001, 0x0A141E]
    plain = M.pointcloud_msg(Header(), points, None, organized=False)
    assert [f.name for f in plain.fields] == ["x", "y", "z"] and plain.point_step == 12


@pytest.mark.parametrize("stride,offset_deg", [(1, 0.0), (2, 30.0), (3, -100.0)])
def test_point_builder_matches_geometry_colored_points(stride, offset_deg):
    rng = np.random.default_rng(2).uniform(0.5, 20.0, (24, 48)).astype(np.float32)
    rng[0, 0], rng[2, 4], rng[4, 6], rng[6, 6] = np.inf, np.nan, 0.1, 30.0
    rgb = np.random.default_rng(3).integers(0, 256, (24, 48, 3), dtype=np.uint8)
    offset = math.radians(offset_deg)
    msg = M.PointCloudBuilder().build(Header(), rng, rgb, stride=stride, min_range=0.2, max_range=25.0,
                                      azimuth_offset_rad=offset)
    points, colors = colored_points(rng, rgb, stride, 0.2, 25.0, offset)
    record = np.frombuffer(msg.data, np.float32).reshape(-1, 4)
    assert msg.width == len(points) and msg.height == 1 and msg.is_dense
    np.testing.assert_allclose(record[:, :3], points, atol=1e-5)
    packed = record[:, 3].view(np.uint32)
    np.testing.assert_array_equal(np.stack([packed >> 16, (packed >> 8) & 255, packed & 255], 1), colors)


def test_organized_points_follow_the_source_pixel_rays():
    rng = np.full((8, 16), 2.0, np.float32)
    rng[0, 0], rng[2, 2], rng[4, 4] = np.inf, np.nan, 50.0
    msg = M.PointCloudBuilder().build(Header(), rng, None, stride=2, min_range=0.0, max_range=10.0, organized=True)
    assert (msg.height, msg.width, msg.point_step, msg.is_dense) == (4, 8, 12, False)
    points = np.frombuffer(msg.data, np.float32).reshape(4, 8, 3)
    invalid = ~np.isfinite(points[..., 0])
    assert invalid[0, 0] and invalid[1, 1] and invalid[2, 2] and invalid.sum() == 3
    np.testing.assert_allclose(points[3, 3], range_to_points(rng)[6, 6])


def _packed_reference(colors: np.ndarray) -> np.ndarray:
    c = colors.astype(np.uint32)
    return (c[..., 0] << 16) | (c[..., 1] << 8) | c[..., 2]


@pytest.mark.parametrize("layout", ["rgb", "bgr_view", "rgba_view", "bgra_view", "mono", "padded_rows"])
@pytest.mark.parametrize("shape,stride", [((24, 48), 1), ((24, 48), 2), ((25, 50), 3), ((2, 4), 1)])
def test_pack_rgb_fast_and_plain_paths_agree(layout, shape, stride):
    rng = np.random.default_rng(4)
    rgb = rng.integers(0, 256, shape + (3,), dtype=np.uint8)
    rgba = rng.integers(0, 256, shape + (4,), dtype=np.uint8)
    padded = rng.integers(0, 256, (shape[0], shape[1] * 3 + 5), dtype=np.uint8)
    colors = {
        "rgb": rgb, "bgr_view": rgb[..., ::-1], "rgba_view": rgba[..., :3], "bgra_view": rgba[..., 2::-1],
        "mono": np.broadcast_to(rgb[..., :1], shape + (3,)),
        "padded_rows": padded[:, : shape[1] * 3].reshape(shape + (3,)),
    }[layout][::stride, ::stride]
    record = np.zeros(colors.shape[:2] + (4,), np.float32)
    M.pack_rgb(colors, record.view(np.uint32)[..., 3])
    np.testing.assert_array_equal(record.view(np.uint32)[..., 3], _packed_reference(colors))
    assert not record[..., :3].any()  # the x, y, z slots are left alone


def _same_message(cdr: bytes, msg) -> None:
    from rclpy.serialization import deserialize_message

    assert deserialize_message(cdr, type(msg)) == msg


@pytest.mark.parametrize("organized", [False, True])
@pytest.mark.parametrize("with_rgb", [False, True])
def test_serialized_outputs_equal_the_messages(organized, with_rgb):
    """The node publishes *_cdr bytes: they must deserialize to exactly the *_msg messages."""
    rng = np.random.default_rng(5)
    depth = rng.uniform(0.5, 20.0, (24, 48)).astype(np.float32)
    depth[0, :5], depth[3, 3] = np.inf, np.nan
    rgb = rng.integers(0, 256, (24, 48, 3), dtype=np.uint8)
    header = Header(stamp=STAMP, frame_id="camera_optical")
    _same_message(M.depth_cdr(header, depth), M.depth_msg(header, depth))
    _same_message(M.mask_cdr(header, np.isfinite(depth)), M.mask_msg(header, np.isfinite(depth)))
    _same_message(M.colorized_cdr(header, depth, 25.0), M.colorized_msg(header, depth, 25.0))
    builder = M.PointCloudBuilder()
    options = dict(stride=2, min_range=0.2, max_range=15.0, organized=organized)
    colors = rgb if with_rgb else None
    _same_message(builder.build_cdr(header, depth, colors, **options), builder.build(header, depth, colors, **options))
    nothing = np.full_like(depth, np.inf)  # no valid point: an empty cloud, still well-formed
    _same_message(builder.build_cdr(header, nothing, colors, **options), builder.build(header, nothing, colors, **options))


def test_cdr_splice_refuses_a_template_with_data():
    from sensor_msgs.msg import Image

    template = Image(encoding="mono8", height=1, width=2, step=2, data=array.array("B", [1, 2]))
    with pytest.raises(ValueError, match="empty data"):
        M.with_data_cdr(template, np.zeros(2, np.uint8))


def test_scan_message_fields():
    spec = LaserScanSpec(angle_increment=math.radians(1.0))
    ranges = np.linspace(1, 2, spec.num_beams, dtype=np.float32)
    msg = M.scan_msg(Header(), ranges, spec)
    assert msg.angle_min == pytest.approx(-math.pi) and len(msg.ranges) == 360
    assert msg.angle_max == pytest.approx(-math.pi + 359 * math.radians(1.0))
    np.testing.assert_array_equal(np.asarray(msg.ranges, np.float32), ranges)


def test_latest_slot_keeps_only_the_newest():
    slot: LatestSlot[int] = LatestSlot()
    assert slot.put(1) is False
    assert slot.put(2) is True  # 1 dropped
    assert slot.take(0.0) == 2
    assert slot.take(0.01) is None
    slot.close()
    assert slot.put(3) is False and slot.take(0.0) is None


def test_node_params_predictor_options_and_native_size():
    from dap_ros.ros.params import NodeParams

    p = NodeParams.from_values({"backend": "onnxruntime", "onnx": "/m.onnx", "device": "cpu"})
    options = p.predictor_options()
    assert p.input_size is None and options["input_size"] is None
    assert options["backend"] == "onnxruntime" and options["onnx"] == "/m.onnx" and options["engine"] is None
    assert options["checkpoint"] is None and options["device"] == "cpu"
    assert NodeParams.from_values({"input_height": 256, "input_width": 512}).input_size == (256, 512)
    with pytest.raises(ConfigError, match="input_height.*both 0"):
        NodeParams.from_values({"input_height": 0, "input_width": 512})
    spec = NodeParams.from_values({"scan.angle_increment_deg": 1.0}).scan_spec()
    assert spec.num_beams == 360


@pytest.mark.parametrize("organized", [False, True])
def test_in_place_messages_equal_the_messages_and_reuse_their_buffers(organized):
    """What the node publishes: messages written straight into reused, aligned buffers."""
    from rclpy.serialization import deserialize_message
    from sensor_msgs.msg import Image, PointCloud2

    rng = np.random.default_rng(6)
    header = Header(stamp=STAMP, frame_id="camera_optical")
    rgb = rng.integers(0, 256, (24, 48, 3), dtype=np.uint8)
    buffers, builder = M.CdrBuffers(), M.PointCloudBuilder()
    options = dict(stride=2, min_range=0.2, max_range=15.0, organized=organized)
    addresses = []
    for far in (0.0, 0.3, 1.0):  # no point dropped, some, all: each message shape in one buffer
        depth = rng.uniform(0.5, 10.0, (24, 48)).astype(np.float32)
        depth[rng.random(depth.shape) < far] = np.inf
        message, pixels = M.depth_message(header, depth.shape, buffers)
        pixels[...] = depth
        assert message.payload.ctypes.data % M.CdrBuffers.ALIGN == 0
        assert deserialize_message(message.cdr.tobytes(), Image) == M.depth_msg(header, depth)
        mask = M.mask_message(header, np.isfinite(depth), buffers)
        assert deserialize_message(mask.cdr.tobytes(), Image) == M.mask_msg(header, np.isfinite(depth))
        colorized = M.colorized_message(header, depth, 25.0, buffers)
        assert deserialize_message(colorized.cdr.tobytes(), Image) == M.colorized_msg(header, depth, 25.0)
        cloud = builder.build_message(header, depth, rgb, buffers=buffers, **options)
        assert deserialize_message(cloud.cdr.tobytes(), PointCloud2) == builder.build(header, depth, rgb, **options)
        addresses.append([buffers.get(key, 0).ctypes.data for key in ("depth", "range_mask", "colorized", "points")])
    assert addresses[0] == addresses[1] == addresses[2]  # no new storage frame after frame


def _colour_layouts(rgb: np.ndarray) -> dict[str, np.ndarray | None]:
    rgba = np.concatenate([rgb, np.full(rgb.shape[:2] + (1,), 7, np.uint8)], axis=2)
    readonly = rgb.copy()
    readonly.setflags(write=False)
    return {
        "rgb8": rgb, "bgr8 view": rgb[..., ::-1], "rgba8 view": rgba[..., :3], "read-only": readonly,
        "mono broadcast": np.broadcast_to(rgb[..., :1], rgb.shape), "none": None,
    }


@pytest.mark.parametrize("organized", [False, True])
@pytest.mark.parametrize("max_range", [15.0, math.inf])
def test_compiled_point_kernel_gives_the_numpy_bytes(monkeypatch, organized, max_range):
    """The optional numba kernel (the `fast` extra) must produce exactly the numpy path's record."""
    pytest.importorskip("numba", reason="the fast extra (numba) is not installed")
    rng = np.random.default_rng(8)
    depth = rng.uniform(0.05, 30.0, (48, 96)).astype(np.float32)
    depth[rng.random(depth.shape) < 0.1] = np.inf
    depth[rng.random(depth.shape) < 0.05] = np.nan
    rgb = rng.integers(0, 256, (48, 96, 3), dtype=np.uint8)
    builder = M.PointCloudBuilder()
    options = dict(stride=2, min_range=0.2, max_range=max_range, organized=organized, azimuth_offset_rad=0.3)
    for name, colours in _colour_layouts(rgb).items():
        monkeypatch.setenv("DAP_ROS_JIT", "0")
        assert M.point_kernel() is None
        expected = builder.record(depth, colours, **options)
        monkeypatch.setenv("DAP_ROS_JIT", "1")
        assert M.point_kernel() is not None
        got = builder.record(depth, colours, **options)
        assert got.shape == expected.shape, name
        assert got.tobytes() == expected.tobytes(), name  # NaN points included, bit for bit


def test_point_kernel_warm_up_compiles_every_colour_layout():
    cloud_jit = pytest.importorskip("dap_ros.ros.cloud_jit", reason="the fast extra (numba) is not installed")
    cloud_jit.warm_up()
    compiled = {str(sig) for sig in cloud_jit._fill_points.signatures}
    assert len(compiled) >= 4, compiled  # C, strided, read-only C, read-only strided colours
