"""ERP conventions (docs/conventions.md), range -> points and the 360-degree laser scan."""
from __future__ import annotations

import math
import subprocess
import sys
import warnings

import numpy as np
import pytest

from dap_ros.errors import ConfigError
from dap_ros.geometry import (
    LaserScanSpec,
    azimuth_elevation,
    colored_points,
    laser_scan,
    range_to_points,
    ray_directions,
    ray_directions_torch,
    scan_angles,
)

# Axis-aligned box room around the camera: (axis, plane coordinate in metres).
ROOM = [(0, 3.0), (0, -2.0), (1, 1.5), (1, -4.0), (2, -1.2), (2, 1.6)]


def reference_rays(height: int, width: int) -> np.ndarray:
    """Rays straight from the formulas of docs/conventions.md, float64, independent of the module."""
    u = np.arange(width) + 0.5
    v = np.arange(height) + 0.5
    phi = np.pi - 2 * np.pi * u / width
    theta = np.pi / 2 - np.pi * v / height
    th, ph = np.meshgrid(theta, phi, indexing="ij")
    return np.stack([np.cos(th) * np.cos(ph), np.cos(th) * np.sin(ph), np.sin(th)], axis=-1)


def render_room(height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Analytic ERP range image of ROOM (float32) and the index of the plane each pixel hits."""
    rays = reference_rays(height, width)
    ts = []
    for axis, value in ROOM:
        with np.errstate(divide="ignore"):
            t = value / rays[..., axis]
        ts.append(np.where(t > 0, t, np.inf))
    ts = np.stack(ts)
    return ts.min(axis=0).astype(np.float32), ts.argmin(axis=0)


def wall_distance(yaw: np.ndarray) -> np.ndarray:
    """Horizontal distance from the camera to the room's walls along body-frame yaw (radians)."""
    d = np.full(np.shape(yaw), np.inf)
    c, s = np.cos(yaw), np.sin(yaw)
    for axis, value in ROOM[:4]:
        comp = c if axis == 0 else s
        with np.errstate(divide="ignore", invalid="ignore"):
            t = value / comp
        d = np.minimum(d, np.where(t > 0, t, np.inf))
    return d


# ---------------------------------------------------------------- conventions


def test_azimuth_elevation_values():
    az, el = azimuth_elevation(4, 8)
    assert az.dtype == np.float64 and el.dtype == np.float64
    assert az.shape == (8,) and el.shape == (4,)
    np.testing.assert_allclose(az[0], np.pi - np.pi / 8)
    np.testing.assert_allclose(az[-1], -np.pi + np.pi / 8)
    np.testing.assert_allclose(np.diff(az), -2 * np.pi / 8)
    np.testing.assert_allclose(el[0], np.pi / 2 - np.pi / 8)
    np.testing.assert_allclose(el[-1], -np.pi / 2 + np.pi / 8)


def test_centre_pixel_looks_forward_odd_size():
    rays = ray_directions(5, 9)  # odd sizes have an exact centre pixel
    np.testing.assert_allclose(rays[2, 4], [1.0, 0.0, 0.0], atol=1e-7)


def test_rep103_directions():
    h, w = 64, 128
    rays = ray_directions(h, w)
    assert rays.shape == (h, w, 3) and rays.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(rays, axis=-1), 1.0, atol=1e-6)
    mid = h // 2
    # the forward-most ray of the horizon row is at the image centre
    assert int(np.argmax(rays[mid, :, 0])) in (w // 2 - 1, w // 2)
    # left half of the image -> +y (camera's left); right half -> -y
    assert np.all(rays[:, : w // 2, 1] > 0)
    assert np.all(rays[:, w // 2 :, 1] < 0)
    # quarter columns: left quarter looks +y, right quarter -y, edges look backward (-x)
    left, right = rays[mid, w // 4, :2], rays[mid, 3 * w // 4, :2]
    np.testing.assert_allclose(left / np.linalg.norm(left), [0, 1], atol=0.03)
    np.testing.assert_allclose(right / np.linalg.norm(right), [0, -1], atol=0.03)
    assert rays[mid, 0, 0] < -0.99 and rays[mid, -1, 0] < -0.99
    # top row looks up, bottom row down
    assert np.all(rays[0, :, 2] > 0.99) and np.all(rays[-1, :, 2] < -0.99)
    np.testing.assert_allclose(rays, reference_rays(h, w), atol=1e-6)


def test_periodic_neighbours():
    rays = ray_directions(32, 64).astype(np.float64)
    step = np.sum(rays[16, 0] * rays[16, 1])  # cos of the angle between adjacent columns
    wrap = np.sum(rays[16, 0] * rays[16, -1])
    np.testing.assert_allclose(wrap, step, atol=1e-6)
    far = np.sum(rays[16, 0] * rays[16, 32])
    assert far < 0  # half a turn apart


def test_ray_table_is_cached_and_read_only():
    a = ray_directions(16, 32)
    assert a is ray_directions(16, 32)
    assert not a.flags.writeable
    with pytest.raises(ValueError):
        a[0, 0, 0] = 1.0


@pytest.mark.parametrize("size", [(0, 8), (8, -1), (2.5, 8), (True, 8), ("4", 8), (None, 8)])
def test_invalid_sizes(size):
    with pytest.raises(ConfigError, match="positive integer"):
        ray_directions(*size)


def test_geometry_import_does_not_import_torch():
    code = "import sys, dap_ros.geometry; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_ray_directions_torch_matches_numpy():
    torch = pytest.importorskip("torch")
    t = ray_directions_torch(8, 16, device="cpu", dtype=torch.float64)
    assert t.shape == (8, 16, 3) and t.dtype == torch.float64
    np.testing.assert_allclose(t.numpy(), reference_rays(8, 16), atol=1e-12)
    t32 = ray_directions_torch(8, 16, "cpu", None)
    assert t32.dtype == torch.float32
    np.testing.assert_array_equal(t32.numpy(), ray_directions(8, 16))


# ---------------------------------------------------------------- range -> points


def test_range_to_points_nan_inf_semantics_without_warnings():
    r = np.full((8, 16), 2.0)  # float64 input
    r[1, 2] = np.nan
    r[3, 4] = np.inf
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        pts = range_to_points(r)
    assert pts.shape == (8, 16, 3) and pts.dtype == np.float32
    assert np.all(np.isnan(pts[1, 2]))
    assert not np.all(np.isfinite(pts[3, 4]))
    ok = np.ones((8, 16), bool)
    ok[1, 2] = ok[3, 4] = False
    assert np.all(np.isfinite(pts[ok]))
    np.testing.assert_allclose(np.linalg.norm(pts[ok], axis=-1), 2.0, rtol=1e-6)


def test_range_to_points_rejects_bad_shape():
    with pytest.raises(ValueError, match=r"\(H, W\)"):
        range_to_points(np.ones((2, 3, 1)))


def test_box_room_points_lie_on_planes():
    h, w = 240, 480
    rng, plane = render_room(h, w)
    pts = range_to_points(rng)
    assert np.all(np.isfinite(pts))
    for k, (axis, value) in enumerate(ROOM):
        hit = plane == k
        assert hit.sum() > 100, f"plane {k} not visible"
        residual = np.abs(pts[hit][:, axis] - value)
        assert residual.max() < 1e-4, (k, residual.max())
    # the wall at x = +3 is in front (centre columns), y = +1.5 on the left half
    assert plane[h // 2, w // 2] == 0
    assert plane[h // 2, w // 4] == 2
    assert plane[0, 0] == 5 and plane[-1, 0] == 4


def test_azimuth_offset_rotates_points_about_z():
    rng, _ = render_room(32, 64)
    base = range_to_points(rng).astype(np.float64)
    yaw = 0.7
    rot = range_to_points(rng, azimuth_offset_rad=yaw).astype(np.float64)
    c, s = math.cos(yaw), math.sin(yaw)
    expected = np.stack([c * base[..., 0] - s * base[..., 1], s * base[..., 0] + c * base[..., 1],
                         base[..., 2]], axis=-1)
    np.testing.assert_allclose(rot, expected, atol=1e-5)
    # positive offset: the image centre (camera forward) ends up toward +yaw
    fwd = range_to_points(np.ones((5, 9)), azimuth_offset_rad=math.pi / 2)[2, 4]
    np.testing.assert_allclose(fwd, [0, 1, 0], atol=1e-6)


def test_colored_points_filters_and_strides():
    h, w = 12, 24
    r = np.full((h, w), 5.0, np.float32)
    r[0, 0] = np.nan
    r[0, 2] = np.inf
    r[2, 2] = 0.2  # below min_range
    r[4, 4] = 50.0  # above max_range
    rgb = np.zeros((h, w, 3), np.uint8)
    rgb[..., 0] = np.arange(h)[:, None]
    rgb[..., 1] = np.arange(w)[None, :]
    pts, cols = colored_points(r, rgb, stride=2, min_range=0.5, max_range=10.0)
    assert pts.dtype == np.float32 and cols.dtype == np.uint8
    assert pts.shape == cols.shape == ((h // 2) * (w // 2) - 4, 3)
    assert np.all(cols[:, 0] % 2 == 0) and np.all(cols[:, 1] % 2 == 0)  # only strided pixels
    full = range_to_points(r)
    np.testing.assert_allclose(pts, full[cols[:, 0], cols[:, 1]], atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(pts, axis=1), 5.0, rtol=1e-6)
    with pytest.raises(ValueError, match="stride"):
        colored_points(r, rgb, stride=0)
    with pytest.raises(ValueError, match="rgb"):
        colored_points(r, rgb[:, :-1])


# ---------------------------------------------------------------- laser scan


def _check_scan_against_room(scan, spec, width, yaw_offset=0.0, median_rel=0.01):
    angles = scan_angles(spec)
    half = 0.5 * spec.angle_increment + math.pi / width  # beam half-width + half a column
    samples = angles[:, None] + np.linspace(-half, half, 33)[None, :] - yaw_offset
    d = wall_distance(samples)
    lo, hi = d.min(axis=1), d.max(axis=1)
    assert np.all(np.isfinite(scan))
    assert np.all(scan >= lo - 1e-4), np.max(lo - scan)
    assert np.all(scan <= hi + 1e-4), np.max(scan - hi)
    # and close to the analytic distance at the beam centre
    centre = wall_distance(angles - yaw_offset)
    assert np.median(np.abs(scan - centre) / centre) < median_rel


def test_laser_scan_box_room_matches_analytic_walls():
    h, w = 480, 960
    rng, _ = render_room(h, w)
    spec = LaserScanSpec()
    scan = laser_scan(rng, spec)
    assert scan.shape == (720,) and scan.dtype == np.float32
    _check_scan_against_room(scan, spec, w)
    # beam 360 points forward: the x = +3 wall; beam 540 (+90 deg, left): y = +1.5 wall
    np.testing.assert_allclose(scan[360], 3.0, atol=0.01)
    np.testing.assert_allclose(scan[540], 1.5, atol=0.01)
    np.testing.assert_allclose(scan[180], 4.0, atol=0.01)
    np.testing.assert_allclose(scan[0], 2.0, atol=0.01)


def test_laser_scan_with_yaw_offset_matches_rotated_room():
    h, w = 240, 960
    rng, _ = render_room(h, w)
    spec = LaserScanSpec()
    scan = laser_scan(rng, spec, azimuth_offset_rad=0.3)
    _check_scan_against_room(scan, spec, w, yaw_offset=0.3)


def test_laser_scan_offset_by_whole_beams_rolls_scan():
    rng = np.random.default_rng(0).uniform(0.5, 20.0, (96, 1440)).astype(np.float32)
    spec = LaserScanSpec()
    base = laser_scan(rng, spec)
    rolled = laser_scan(rng, spec, azimuth_offset_rad=10 * spec.angle_increment)
    np.testing.assert_array_equal(rolled, np.roll(base, 10))
    # forward obstacle + offset +90 deg appears on the +90 deg beam
    r = np.full((96, 1920), np.inf, np.float32)
    r[:, 959:961] = 2.0
    s = laser_scan(r, spec, azimuth_offset_rad=math.pi / 2)
    assert np.isfinite(s).sum() == 1 and np.isfinite(s[540])


def test_laser_scan_wraps_around_at_pi():
    h, w = 960, 1920
    spec = LaserScanSpec()
    for col in (0, w - 1):
        r = np.full((h, w), np.inf, np.float32)
        r[:, col] = 2.0
        scan = laser_scan(r, spec)
        assert np.isfinite(scan[0]), col
        assert np.isfinite(scan).sum() == 1, col
        assert 1.99 < scan[0] <= 2.0


def test_laser_scan_uses_horizontal_range_and_band():
    h, w = 180, 360  # 1 degree per row: rows 85..94 are inside +-5 deg
    az, el = azimuth_elevation(h, w)
    band = np.nonzero(np.abs(np.degrees(el)) <= 5.0)[0]
    assert band.tolist() == list(range(85, 95))
    r = np.full((h, w), np.inf, np.float32)
    r[85, :] = 4.0  # highest row of the band, elevation 4.5 deg
    r[60, :] = 1.0  # nearer but outside the band: ignored
    scan = laser_scan(r, LaserScanSpec())
    np.testing.assert_allclose(scan, 4.0 * math.cos(el[85]), rtol=1e-6)
    assert scan[0] < 4.0


def test_laser_scan_empty_beam_rules():
    h, w = 96, 1440  # two columns per beam; only one of them is set, the other stays NaN
    spec = LaserScanSpec(range_min=0.5, range_max=10.0)
    _, el = azimuth_elevation(h, w)
    band = np.nonzero(np.abs(np.degrees(el)) <= 5.0)[0]
    r = np.full((h, w), np.nan, np.float32)
    cases = {
        "valid_among_far": ([np.inf, 3.0, 20.0], 3.0),
        "far": ([np.inf, np.nan], np.inf),
        "beyond_max": ([20.0, 0.1], np.inf),
        "near": ([0.1, np.nan], -np.inf),
        "nan": ([np.nan], np.nan),
    }
    cols = {name: 100 + 50 * i for i, name in enumerate(cases)}
    for name, (values, _) in cases.items():
        vals = np.resize(np.array(values, np.float32), band.size)
        r[band, cols[name]] = vals
    scan = laser_scan(r, spec)
    az, _ = azimuth_elevation(h, w)
    for name, (_, expected) in cases.items():
        beam = int(round((az[cols[name]] + math.pi) / spec.angle_increment)) % spec.num_beams
        got = scan[beam]
        if np.isnan(expected):
            assert np.isnan(got), name
        elif np.isinf(expected):
            assert got == expected, name
        else:
            cos_max = math.cos(math.radians(5.0))
            assert expected * cos_max - 1e-6 <= got <= expected, name
    assert np.isnan(scan).sum() == spec.num_beams - 4  # everything else stays NaN


def test_laser_scan_all_sky_band_is_plus_inf():
    h, w = 240, 480
    rng, _ = render_room(h, w)
    band = np.abs(np.degrees(azimuth_elevation(h, w)[1])) <= 6.0
    rng[band] = np.inf  # the band sees only sky, the rest of the room is still there
    scan = laser_scan(rng, LaserScanSpec())
    assert np.all(scan == np.inf)


def test_laser_scan_fine_increment_and_uneven_beams():
    rng, _ = render_room(32, 64)  # 64 columns, 720 beams: most beams take their nearest column
    spec = LaserScanSpec()
    scan = laser_scan(rng, spec)
    assert scan.shape == (720,) and np.all(np.isfinite(scan))
    _check_scan_against_room(scan, spec, 64, median_rel=0.05)
    odd = LaserScanSpec(angle_increment=2 * math.pi / 700.4)  # 700 beams, small gap at +pi
    rng, _ = render_room(120, 960)
    s = laser_scan(rng, odd)
    assert s.shape == (700,) and np.all(np.isfinite(s))


def _reference_scan(rng: np.ndarray, spec: LaserScanSpec, offset: float) -> tuple[np.ndarray, list]:
    """Per beam, straight from the module docstring (finite ranges only): the nearest horizontal
    range over the columns in [angle - inc/2, angle + inc/2); a beam without a column gets the
    value of one of its angularly nearest columns (the candidates, equal within rounding)."""
    h, w = rng.shape
    az, el = azimuth_elevation(h, w)
    band = np.nonzero(np.abs(np.degrees(el)) <= 5.0)[0]
    column = (rng[band] * np.cos(el[band])[:, None].astype(np.float32)).min(axis=0)
    inc = spec.angle_increment
    expected, candidates = np.full(spec.num_beams, np.nan, np.float32), []
    for i, angle in enumerate(scan_angles(spec)):
        rel = np.angle(np.exp(1j * (az + offset - angle)))  # wrapped to (-pi, pi]
        inside = (rel >= -inc / 2 - 1e-12) & (rel < inc / 2 - 1e-12)
        if inside.any():
            expected[i] = column[inside].min()
            candidates.append(None)
        else:
            candidates.append(set(column[np.abs(rel) <= np.abs(rel).min() + 1e-9]))
    return expected, candidates


@pytest.mark.parametrize("height, width, increment_deg, offset", [
    (96, 1920, 0.5, 0.0), (48, 1440, 0.5, 0.3), (64, 960, 1.0, -2.0),  # normal settings
    (32, 64, 0.5, 0.0), (40, 1920, 360 / 7680, 0.7),  # finer than the columns: beams without a column
])
def test_laser_scan_matches_a_per_beam_reference(height, width, increment_deg, offset):
    rng = np.random.default_rng(width).uniform(0.5, 20.0, (height, width)).astype(np.float32)
    spec = LaserScanSpec(angle_increment=math.radians(increment_deg))
    scan = laser_scan(rng, spec, azimuth_offset_rad=offset)
    expected, candidates = _reference_scan(rng, spec, offset)
    mine = np.array([c is None for c in candidates])
    np.testing.assert_array_equal(scan[mine], expected[mine])
    assert all(scan[i] in c for i, c in enumerate(candidates) if c is not None)


def test_laser_scan_cost_does_not_grow_with_beams_times_width():
    """16384 beams (4 x max_input_width's default) on a 1920-wide image: once a beams x width
    intermediate (850 MB, 3 s); now the plan is linear in beams + columns."""
    import tracemalloc

    rng = np.random.default_rng(0).uniform(0.5, 20.0, (120, 1920)).astype(np.float32)
    spec = LaserScanSpec(angle_increment=2 * math.pi / 16384)
    tracemalloc.start()
    try:
        laser_scan(rng, spec, azimuth_offset_rad=0.123)  # an offset no other test plans for
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8 * 2**20, f"one scan's plan peaked at {peak / 2**20:.0f} MiB"


def test_scan_spec_and_angles():
    spec = LaserScanSpec()
    assert spec.num_beams == 720
    a = scan_angles(spec)
    assert a[0] == -math.pi
    np.testing.assert_allclose(np.diff(a), spec.angle_increment)
    np.testing.assert_allclose(a[-1], spec.angle_max)
    assert a[-1] < math.pi
    assert LaserScanSpec(angle_increment=math.radians(1.0)).num_beams == 360


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"angle_increment": 0.0}, "angle_increment"),
        ({"angle_increment": -0.01}, "angle_increment"),
        ({"angle_increment": 4.0}, "angle_increment"),
        ({"angle_increment": float("nan")}, "finite"),
        ({"elevation_min_deg": 5.0, "elevation_max_deg": 5.0}, "elevation"),
        ({"elevation_min_deg": -95.0}, "elevation"),
        ({"range_min": -1.0}, "range_min"),
        ({"range_min": 10.0, "range_max": 10.0}, "range_min < range_max"),
        ({"range_max": float("inf")}, "finite"),
    ],
)
def test_scan_spec_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        LaserScanSpec(**kwargs)
