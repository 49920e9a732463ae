"""The point-cloud record: geometry's rays exactly, organized layout, colour packing, numba kernel."""
from __future__ import annotations

import math

import numpy as np
import pytest

from dap_ros.geometry import colored_points, range_to_points
from dap_ros.ros.point_cloud import PointCloudBuilder, pack_rgb, point_kernel


@pytest.mark.parametrize("stride,offset_deg", [(1, 0.0), (2, 30.0), (3, -100.0)])
def test_record_equals_geometry_colored_points(stride, offset_deg):
    rng = np.random.default_rng(2).uniform(0.5, 20.0, (24, 48)).astype(np.float32)
    rng[0, 0], rng[2, 4], rng[4, 6], rng[6, 6] = np.inf, np.nan, 0.1, 30.0
    rgb = np.random.default_rng(3).integers(0, 256, (24, 48, 3), dtype=np.uint8)
    offset = math.radians(offset_deg)
    record = PointCloudBuilder().record(rng, rgb, stride=stride, min_range=0.2, max_range=25.0,
                                        azimuth_offset_rad=offset)
    points, colors = colored_points(rng, rgb, stride, 0.2, 25.0, offset)
    assert record.shape == (len(points), 4)
    assert record[:, :3].tobytes() == points.tobytes()  # the same rays: bit for bit
    packed = record[:, 3].view(np.uint32)
    np.testing.assert_array_equal(np.stack([packed >> 16, (packed >> 8) & 255, packed & 255], 1), colors)


def test_organized_points_follow_the_source_pixel_rays():
    rng = np.full((8, 16), 2.0, np.float32)
    rng[0, 0], rng[2, 2], rng[4, 4] = np.inf, np.nan, 50.0
    points = PointCloudBuilder().record(rng, None, stride=2, min_range=0.0, max_range=10.0, organized=True)
    assert points.shape == (4, 8, 3)
    invalid = ~np.isfinite(points[..., 0])
    assert invalid[0, 0] and invalid[1, 1] and invalid[2, 2] and invalid.sum() == 3
    np.testing.assert_array_equal(points[3, 3], range_to_points(rng)[6, 6])


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
    pack_rgb(colors, record.view(np.uint32)[..., 3])
    np.testing.assert_array_equal(record.view(np.uint32)[..., 3], _packed_reference(colors))
    assert not record[..., :3].any()  # the x, y, z slots are left alone


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
    builder = PointCloudBuilder()
    options = dict(stride=2, min_range=0.2, max_range=max_range, organized=organized, azimuth_offset_rad=0.3)
    for name, colours in _colour_layouts(rgb).items():
        monkeypatch.setenv("DAP_ROS_JIT", "0")
        assert point_kernel() is None
        expected = builder.record(depth, colours, **options)
        monkeypatch.setenv("DAP_ROS_JIT", "1")
        assert point_kernel() is not None
        got = builder.record(depth, colours, **options)
        assert got.shape == expected.shape, name
        assert got.tobytes() == expected.tobytes(), name  # NaN points included, bit for bit


def test_point_kernel_warm_up_compiles_every_colour_layout():
    cloud_jit = pytest.importorskip("dap_ros.ros.cloud_jit", reason="the fast extra (numba) is not installed")
    cloud_jit.warm_up()
    compiled = {str(sig) for sig in cloud_jit._fill_points.signatures}
    assert len(compiled) >= 4, compiled  # C, strided, read-only C, read-only strided colours
