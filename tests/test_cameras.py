"""Real cameras and mounts without ROS: fisheye lenses, levelling, the self filter (docs/cameras.md).

The scenes are rendered by the synthetic generator's ray caster through each camera model
(tests/camera_renders.py): the same room as a level panorama, as seen by a tilted or upside-down
camera, and by two fisheye lenses. The embedded demo model (trained on such rooms) supplies depth.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import yaml

from dap_ros.errors import ConfigError, ImageError
from dap_ros.geometry import LaserScanSpec, laser_scan, ray_directions
from dap_ros.geometry.fisheye import FisheyeCalibration, FisheyeLens, estimate_circle, split_frame
from dap_ros.geometry.rotation import quaternion_matrix, roll_pitch, rpy_deg_matrix, rpy_matrix, tilt_matrix
from dap_ros.geometry.self_mask import self_mask_from_ranges
from dap_ros.pipeline import DepthPredictor
from dap_ros.pipeline.camera import Camera
from dap_ros.settings import CameraSpec
from tests import camera_renders as renders

H, W = 128, 256  # the embedded model's native size
CPU = torch.device("cpu")


def write_calibration(path, calibration: FisheyeCalibration) -> str:
    lenses = []
    for lens in calibration.lenses:
        entry = {"model": lens.model, "center": list(lens.center), "focal": lens.focal, "fov_deg": lens.fov_deg,
                 "rpy_deg": list(lens.rpy_deg)}
        if lens.model == "kannala_brandt":
            entry["k"] = list(lens.k)
        lenses.append(entry)
    path.write_text(yaml.safe_dump({"layout": calibration.layout, "image_size": list(calibration.image_size),
                                    "lenses": lenses}))
    return str(path)


@pytest.fixture(scope="module")
def room():
    return renders.scene()


@pytest.fixture(scope="module")
def level(room):
    return renders.panorama(room, H, W)


@pytest.fixture(scope="module")
def embedded():
    return DepthPredictor.create(None)


# --- rotations and lenses ----------------------------------------------------------------------

def test_rpy_follows_the_ros_fixed_axis_convention():
    r = rpy_deg_matrix([10.0, 20.0, 30.0])
    rx, ry = rpy_matrix(math.radians(10), 0, 0), rpy_matrix(0, math.radians(20), 0)
    rz = rpy_matrix(0, 0, math.radians(30))
    np.testing.assert_allclose(r, rz @ ry @ rx, atol=1e-12)
    np.testing.assert_allclose(rpy_deg_matrix([0, 0, 90]) @ [1, 0, 0], [0, 1, 0], atol=1e-12)  # yaw turns x to y
    np.testing.assert_allclose(rpy_deg_matrix([180, 0, 0]) @ [0, 0, 1], [0, 0, -1], atol=1e-12)  # upside down
    # a quaternion of roll 15, pitch -5, yaw 70: its tilt keeps roll and pitch and drops the yaw
    roll, pitch, yaw = math.radians(15), math.radians(-5), math.radians(70)
    cr, sr, cp, sp, cy, sy = (f(a / 2) for a in (roll, pitch, yaw) for f in (math.cos, math.sin))
    q = (sr * cp * cy - cr * sp * sy, cr * sp * cy + sr * cp * sy,
         cr * cp * sy - sr * sp * cy, cr * cp * cy + sr * sp * sy)
    np.testing.assert_allclose(quaternion_matrix(*q), rpy_matrix(roll, pitch, yaw), atol=1e-12)
    np.testing.assert_allclose(roll_pitch(quaternion_matrix(*q)), (roll, pitch), atol=1e-12)
    np.testing.assert_allclose(tilt_matrix(quaternion_matrix(*q)), rpy_matrix(roll, pitch, 0.0), atol=1e-12)


@pytest.mark.parametrize("model", ["equidistant", "kannala_brandt"])
def test_lens_projection_is_the_documented_formula_and_inverts(model):
    k = (0.02, -0.004, 0.001, 0.0) if model == "kannala_brandt" else (0.0,) * 4
    lens = FisheyeLens(model, (100.0, 90.0), 60.0, 200.0, (0.0, 0.0, 180.0), k)
    u, v = np.meshgrid(np.arange(0.0, 200.0, 3.0), np.arange(0.0, 180.0, 3.0))
    rays, theta = lens.unproject(u, v)
    seen = theta < lens.half_fov
    pu, pv, ptheta = lens.project(rays)
    np.testing.assert_allclose(pu[seen], u[seen], atol=1e-6)
    np.testing.assert_allclose(pv[seen], v[seen], atol=1e-6)
    # the documented formula: lens at yaw 180 looks along -x; a ray left of its axis (image right = -y_lens)
    ray = np.array([-math.cos(0.5), -math.sin(0.5), 0.0])  # 0.5 rad from -x, towards the camera's right
    pu, pv, ptheta = lens.project(ray[None])
    t = 0.5
    expected_r = 60.0 * (t + k[0] * t**3 + k[1] * t**5 + k[2] * t**7 + k[3] * t**9)
    np.testing.assert_allclose([pu[0], pv[0], ptheta[0]], [100.0 - expected_r, 90.0, 0.5], atol=1e-9)


@pytest.mark.parametrize("change, key", [
    ({"layout": "stacked"}, "layout"),
    ({"image_size": [3840]}, "image_size"),
    ({"lenses": [{}]}, "lenses"),
    ({"focal": -5}, "lenses[0].focal"),
    ({"fov_deg": 400}, "lenses[0].fov_deg"),
    ({"fov_deg": 80}, "lenses[0].fov_deg"),
    ({"model": "pinhole"}, "lenses[0].model"),
    ({"center": [5000, 10]}, "lenses[0].center"),
    ({"k": [0.1, 0, 0, 0]}, "lenses[0].k"),
    ({"model": "kannala_brandt"}, "lenses[0].k"),
    ({"model": "kannala_brandt", "k": [0, -0.5, 0, 0]}, "lenses[0].k"),
    ({"extra": 1}, "lenses[0].extra"),
    ({"unknown_top": 1}, "unknown_top"),
    ({"drop": "focal"}, "lenses[0].focal"),
])
def test_bad_calibrations_name_the_key(change, key):
    lens = {"model": "equidistant", "center": [960, 960], "focal": 550.0, "fov_deg": 200, "rpy_deg": [0, 0, 0]}
    data = {"layout": "side_by_side", "image_size": [3840, 1920], "lenses": [dict(lens), dict(lens)]}
    for name, value in change.items():
        if name in ("layout", "image_size", "lenses", "unknown_top"):
            data[name] = value
        elif name == "drop":
            del data["lenses"][0][value]
        else:
            data["lenses"][0][name] = value
    with pytest.raises(ConfigError) as info:
        FisheyeCalibration.from_dict(data, "cal.yaml")
    assert f"cal.yaml: {key}" in str(info.value) and "\n" not in str(info.value)


def test_estimated_image_circles(room):
    calibration = renders.calibration(size=200)
    frame = renders.fisheye_frame(room, calibration)
    for part, lens in zip(split_frame(frame, calibration.layout), calibration.lenses):
        cx, cy, radius = estimate_circle(part, threshold=2)
        assert abs(cx - lens.center[0]) < 1.5 and abs(cy - lens.center[1]) < 1.5
        assert abs(radius - lens.radius(lens.half_fov)) < 3.0


# --- the remap -----------------------------------------------------------------------------------

@pytest.mark.parametrize("model", ["equidistant", "kannala_brandt"])
@pytest.mark.parametrize("layout", ["side_by_side", "top_bottom", "two_topics"])
def test_fisheye_frames_become_the_level_panorama(room, level, tmp_path, model, layout):
    calibration = renders.calibration(model, layout, size=240)
    frame = renders.fisheye_frame(room, calibration)
    camera = Camera(CameraSpec(projection="dual_fisheye",
                               fisheye_calibration=write_calibration(tmp_path / "c.yaml", calibration)), CPU)
    panorama = camera.panorama(camera.sources(frame), (H, W), camera.view())
    rays = ray_directions(H, W)
    away = (np.abs(rays[..., 0]) > math.sin(math.radians(8))) & (np.abs(rays[..., 2]) < 0.95)  # seam, poles
    assert renders.psnr(panorama, level[0], away) > 30.0
    assert renders.psnr(panorama, level[0], np.ones((H, W), bool)) > 28.0
    assert camera.invalid((H, W), camera.view(), camera.sources(frame)) is None  # 200° lenses: no blind spot


def test_narrow_lenses_leave_a_blind_band_that_is_invalid(room, tmp_path, embedded):
    calibration = renders.calibration(size=200, fov=170.0)
    frame = renders.fisheye_frame(room, calibration)
    spec = CameraSpec(projection="dual_fisheye",
                      fisheye_calibration=write_calibration(tmp_path / "c.yaml", calibration))
    predictor = DepthPredictor(embedded.runner, input_size=(H, W), camera=Camera(spec, CPU))
    result = predictor.predict(frame, (H, W))
    band = np.abs(ray_directions(H, W)[..., 0]) < math.cos(math.radians(86))  # 5 degrees either side of the seam
    assert np.isnan(result.range_m[band]).all() and not result.in_range[band].any()
    assert result.filtered == int(np.isnan(result.range_m).sum()) > 0


@pytest.mark.parametrize("layout", ["side_by_side", "two_topics"])
def test_point_colours_of_fisheye_lenses_are_the_nearest_pixels_and_black_where_unseen(room, level, tmp_path,
                                                                                          layout):
    calibration = renders.calibration(layout=layout, size=200, fov=170.0)
    camera = Camera(CameraSpec(projection="dual_fisheye",
                               fisheye_calibration=write_calibration(tmp_path / "c.yaml", calibration)), CPU)
    sources = camera.sources(renders.fisheye_frame(room, calibration))
    for source in sources:
        source[0, 0] = 255  # outside the image circles: no output pixel may show it
    colors = camera.colors(sources, (H, W), camera.view(), 2)
    unseen = camera.invalid((H, W), camera.view(), sources)[::2, ::2].numpy()
    assert colors.shape == (H // 2, W // 2, 3) and unseen.any()
    assert not colors[unseen].any()
    seen = ~unseen & (np.abs(ray_directions(H, W)[::2, ::2, 2]) < 0.95)
    assert renders.psnr(colors, level[0][::2, ::2], seen) > 24.0


@pytest.mark.parametrize("rpy", [(10.0, 20.0, 0.0), (180.0, 0.0, 0.0), (5.0, -15.0, 40.0)])
def test_tilted_mounts_level_to_the_level_panorama(room, level, rpy):
    tilted, _ = renders.panorama(room, H, W, rpy_deg_matrix(rpy))
    camera = Camera(CameraSpec(mount_rpy_deg=rpy, leveling="static"), CPU)
    panorama = camera.panorama([tilted], (H, W), camera.view())
    polar = np.abs(ray_directions(H, W)[..., 2]) < 0.95
    assert renders.psnr(panorama, level[0], polar) > 30.0
    assert renders.psnr(tilted, level[0], polar) < 20.0  # what the network would see without levelling
    colors = camera.colors([tilted], (H, W), camera.view(), 2)
    assert renders.psnr(colors, level[0][::2, ::2], polar[::2, ::2]) > 24.0  # nearest pixel, for point colours


def test_levelled_depth_and_scan_equal_the_level_cameras(room, level, embedded):
    spec = LaserScanSpec(angle_increment=math.radians(2.0), elevation_min_deg=-10.0, elevation_max_deg=10.0)
    reference = embedded.predict(level[0]).range_m
    ref_scan = laser_scan(reference, spec)
    for rpy in ((10.0, 20.0, 0.0), (180.0, 0.0, 0.0), (5.0, -15.0, 40.0)):
        tilted, _ = renders.panorama(room, H, W, rpy_deg_matrix(rpy))
        camera = Camera(CameraSpec(mount_rpy_deg=rpy, leveling="static"), CPU)
        levelled = DepthPredictor(embedded.runner, input_size=(H, W), camera=camera).predict(tilted).range_m
        relative = np.abs(levelled - reference) / reference
        scan = laser_scan(levelled, spec)
        both = np.isfinite(scan) & np.isfinite(ref_scan)
        assert np.median(relative) < 0.01 and np.percentile(relative, 90) < 0.03, rpy
        assert np.median(np.abs(scan[both] - ref_scan[both]) / ref_scan[both]) < 0.02, rpy
        unlevelled = embedded.predict(tilted).range_m
        assert np.median(np.abs(unlevelled - reference) / reference) > 0.04, rpy  # levelling is what fixed it


def test_imu_tilt_levels_each_frame(room, level, embedded):
    camera = Camera(CameraSpec(leveling="imu"), CPU)
    predictor = DepthPredictor(embedded.runner, input_size=(H, W), camera=camera)
    reference = embedded.predict(level[0]).range_m
    for roll, pitch in ((15.0, 0.0), (-8.0, 12.0)):
        body = rpy_deg_matrix([roll, pitch, 0.0])  # the robot (and its rigid camera) tilted in the world
        frame, _ = renders.panorama(room, H, W, body)
        levelled = predictor.predict(frame, tilt=tilt_matrix(body)).range_m
        static = predictor.predict(frame).range_m  # no IMU sample: levelled as if the robot were level
        assert np.median(np.abs(levelled - reference) / reference) < 0.01
        assert np.median(np.abs(static - reference) / reference) > 0.02


def test_self_mask_and_body_box_invalidate_exactly_their_pixels(level, embedded, tmp_path):
    from PIL import Image

    mask = np.full((32, 64), 255, np.uint8)
    mask[26:, :] = 0  # the bottom of the camera's own panorama shows the robot
    Image.fromarray(mask).save(tmp_path / "mask.png")
    camera = Camera(CameraSpec(self_mask=str(tmp_path / "mask.png")), CPU)
    result = DepthPredictor(embedded.runner, input_size=(H, W), camera=camera).predict(level[0])
    expected = np.repeat(np.repeat(mask == 0, 4, axis=0), 4, axis=1)  # nearest resize to 128x256
    np.testing.assert_array_equal(np.isnan(result.range_m), expected)
    assert result.filtered == int(expected.sum()) and not result.in_range[expected].any()

    box = CameraSpec(box_min=(-1.0, -1.0, -2.0), box_max=(1.0, 1.0, -0.5))
    result = DepthPredictor(embedded.runner, input_size=(H, W), camera=Camera(box, CPU)).predict(level[0])
    reference = embedded.predict(level[0]).range_m
    points = reference[..., None] * ray_directions(H, W)
    inside = ((points >= box.box_min) & (points <= box.box_max)).all(axis=-1)
    assert inside.any()
    np.testing.assert_array_equal(np.isnan(result.range_m), inside)
    np.testing.assert_array_equal(result.range_m[~inside], reference[~inside])


def test_frames_that_do_not_fit_the_calibration_are_image_errors(room, tmp_path):
    calibration = renders.calibration(size=120)
    spec = CameraSpec(projection="dual_fisheye",
                      fisheye_calibration=write_calibration(tmp_path / "c.yaml", calibration))
    camera = Camera(spec, CPU)
    with pytest.raises(ImageError, match="frame is 200x100 but the fisheye calibration .* is for 240x120"):
        camera.sources(np.zeros((100, 200, 3), np.uint8))
    with pytest.raises(ImageError, match="one frame with both lenses"):
        camera.sources([np.zeros((120, 120, 3), np.uint8)] * 2)
    assert camera.output_size(camera.sources(np.zeros((120, 240, 3), np.uint8))) == (60, 120)


def test_a_missing_self_mask_or_calibration_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="self_mask: image file not found"):
        Camera(CameraSpec(self_mask=str(tmp_path / "none.png")), CPU)
    with pytest.raises(ConfigError, match="fisheye calibration .*none.yaml: cannot read it"):
        Camera(CameraSpec(projection="dual_fisheye", fisheye_calibration=str(tmp_path / "none.yaml")), CPU)


def test_self_mask_from_ranges_marks_what_stays_near_and_still():
    rng = np.random.default_rng(0)
    frames = [rng.uniform(2.0, 10.0, (16, 32)) for _ in range(3)]
    for frame in frames:
        frame[12:, 4:10] = 0.4  # the robot: near and unchanged
        frame[2, 2] = 0.5 + rng.uniform()  # near but moving: the world
    mask = self_mask_from_ranges(frames, near=1.0, spread=0.1, grow=0)
    expected = np.full((16, 32), 255, np.uint8)
    expected[12:, 4:10] = 0
    np.testing.assert_array_equal(mask, expected)
    grown = self_mask_from_ranges(frames, near=1.0, spread=0.1, grow=1)
    assert grown[11, 5] == 0 and grown[12, 3] == 0 and grown[10, 5] == 255
    with pytest.raises(ValueError, match="at least two frames"):
        self_mask_from_ranges(frames[:1], 1.0, 0.1)
