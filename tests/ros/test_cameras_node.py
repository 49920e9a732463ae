"""Real cameras and mounts through the node on DDS: dual-fisheye frames (one topic or two), IMU
levelling, the self filter, a tilted mount's points, and bad calibrations and frames."""
from __future__ import annotations

import math

import numpy as np
import pytest
import yaml
from ros_helpers import rgb_image_msg, send_until_outputs
from sensor_msgs.msg import Image, Imu

from dap_ros.geometry import LaserScanSpec, laser_scan, ray_directions
from dap_ros.geometry.rotation import rpy_deg_matrix
from dap_ros.ros.client import qos, stamp_ns
from tests import camera_renders as renders

pytestmark = pytest.mark.ros
EMBEDDED = {"checkpoint": "", "allow_random_weights": False, "model_config": "vitl", "input_height": 128,
            "input_width": 256, "mask_threshold": 0.5}


def calibration_file(tmp_path, layout="side_by_side", size=120):
    calibration = renders.calibration(layout=layout, size=size)
    lenses = [{"model": lens.model, "center": list(lens.center), "focal": lens.focal, "fov_deg": lens.fov_deg,
               "rpy_deg": list(lens.rpy_deg)} for lens in calibration.lenses]
    path = tmp_path / f"{layout}.yaml"
    path.write_text(yaml.safe_dump({"layout": layout, "image_size": list(calibration.image_size), "lenses": lenses}))
    return calibration, str(path)


def depth_of(msg: Image) -> np.ndarray:
    return np.frombuffer(msg.data, np.float32).reshape(msg.height, msg.width)


def test_dual_fisheye_frames_and_frames_of_another_size(harness, make_node, tmp_path):
    calibration, path = calibration_file(tmp_path)
    frame = renders.fisheye_frame(renders.scene(), calibration)
    node = make_node(input_projection="dual_fisheye", fisheye_calibration=path, points__stride=1)
    expected = node.predictor.predict(frame).range_m  # before any frame: the predictor takes one caller at a time
    harness.subscribe(["depth", "points"])
    pub = harness.publisher(profile=qos(depth=10))
    _, out = send_until_outputs(harness, pub, lambda s: rgb_image_msg(frame, s, "cam"), ["depth", "points"])
    depth = depth_of(out["depth"])
    assert depth.shape == (60, 120)  # output_size input: a panorama half as high as a 120x120 lens image
    np.testing.assert_array_equal(depth, expected)
    # a frame the calibration does not describe is counted and skipped; the next good one is answered
    pub.publish(rgb_image_msg(np.zeros((64, 128, 3), np.uint8), harness.new_stamp(), "cam"))
    harness.spin_until(lambda: node.stats.rejected.get("frame_size", 0) == 1, 10.0, "the wrong-size frame counted")
    send_until_outputs(harness, pub, lambda s: rgb_image_msg(frame, s, "cam"), ["depth"])


def test_two_lens_topics_are_paired_by_stamp(harness, make_node, tmp_path):
    calibration, path = calibration_file(tmp_path, "two_topics", size=100)
    lenses = renders.fisheye_frame(renders.scene(), calibration)
    node = make_node(input_projection="dual_fisheye", fisheye_calibration=path)
    expected = node.predictor.predict(lenses).range_m  # before any frame: the predictor takes one caller at a time
    harness.subscribe(["depth"])
    pubs = [harness.publisher(f"image/lens{i}", profile=qos(depth=10)) for i in (0, 1)]
    harness.spin_until(lambda: all(p.get_subscription_count() for p in pubs), 10.0, "both lens subscriptions")
    sent = []

    def pair(stamp):
        sent.append(stamp)
        pubs[1].publish(rgb_image_msg(lenses[1], stamp, "cam"))  # lens 1 first: arrival order does not matter
        return rgb_image_msg(lenses[0], stamp, "cam")

    _, out = send_until_outputs(harness, pubs[0], pair, ["depth"])
    np.testing.assert_array_equal(depth_of(out["depth"]), expected)

    # send_until_outputs sends a pair every 0.3 s until one is answered: on a busy machine the pairs
    # sent after the answered one are still on their way or in the worker when it returns. Counting
    # starts once the node has paired every pair sent and processed or dropped each of them.
    def settled() -> bool:
        snap = node.stats.snapshot(0.0)
        return snap.received == len(sent) and snap.processed + snap.dropped == snap.received

    harness.spin_until(settled, 20.0, "the node to pair and process or drop every pair sent")
    before = node.stats.snapshot(0.0).processed
    stamp = harness.new_stamp()
    pubs[0].publish(rgb_image_msg(lenses[0], stamp, "cam"))
    later = type(stamp)(sec=stamp.sec + 1, nanosec=stamp.nanosec)  # 1 s apart: never a pair
    pubs[1].publish(rgb_image_msg(lenses[1], later, "cam"))
    pending = node._lenses._pending
    harness.spin_until(lambda: [s for s, _ in pending[0]] == [stamp_ns(stamp)]
                       and [s for s, _ in pending[1]] == [stamp_ns(later)], 10.0, "both lens frames at the node")
    assert node.stats.snapshot(0.0).processed == before  # received, and not paired


def test_imu_levelling_follows_the_published_orientation(harness, make_node):
    room = renders.scene()
    level, _ = renders.panorama(room, 128, 256)
    node = make_node(**EMBEDDED, leveling="imu", frame_id="base_link")
    reference = node.predictor.predict(level, tilt=np.eye(3)).range_m
    harness.subscribe(["depth"])
    pub = harness.publisher(profile=qos(depth=10))
    imu_pub = harness.node.create_publisher(Imu, harness.topic("imu"), qos("best_effort", 10))
    harness.spin_until(lambda: imu_pub.get_subscription_count() > 0, 10.0, "the IMU subscription")

    def tilted_frame(roll: float, pitch: float):
        body = rpy_deg_matrix([roll, pitch, 0.0])
        frame, _ = renders.panorama(room, 128, 256, body)

        def make(stamp):
            imu = Imu()
            imu.header.stamp = stamp
            cr, sr, cp, sp = (f(math.radians(a) / 2) for a in (roll, pitch) for f in (math.cos, math.sin))
            imu.orientation.x, imu.orientation.y = sr * cp, cr * sp
            imu.orientation.z, imu.orientation.w = -sr * sp, cr * cp
            imu_pub.publish(imu)  # the IMU sample of this frame's moment, before the frame
            # The node levels by the sample nearest the frame's stamp: with one sample per frame, an
            # image that overtook its IMU message (two topics, a busy machine) would be levelled by
            # the previous frame's orientation. A real IMU streams at hundreds of Hz; here, wait.
            harness.spin_until(lambda: stamp_ns(stamp) in [s for s, _ in list(node._imu._samples)], 10.0,
                               "the frame's IMU sample at the node")
            return rgb_image_msg(frame, stamp, "base_link")

        return make

    for roll, pitch in ((15.0, 0.0), (0.0, 0.0), (-5.0, 10.0)):
        _, out = send_until_outputs(harness, pub, tilted_frame(roll, pitch), ["depth"])
        depth = depth_of(out["depth"])
        assert out["depth"].header.frame_id == "base_link_level"
        assert np.median(np.abs(depth - reference) / reference) < 0.02, (roll, pitch)
    assert node._imu_stale == 0
    # frames without a fresh IMU sample: levelled statically, counted and reported
    body_frame, _ = renders.panorama(room, 128, 256, rpy_deg_matrix([15.0, 0.0, 0.0]))
    later = lambda s: type(s)(sec=s.sec + 5, nanosec=s.nanosec)  # noqa: E731 - 5 s after the last IMU sample
    _, out = send_until_outputs(harness, pub, lambda s: rgb_image_msg(body_frame, later(s), "base_link"), ["depth"])
    assert node._imu_stale >= 1
    assert np.median(np.abs(depth_of(out["depth"]) - reference) / reference) > 0.02


def test_self_mask_removes_its_pixels_from_depth_points_and_scan(harness, make_node, real_sample, tmp_path):
    from PIL import Image as PILImage

    mask = np.full((64, 128), 255, np.uint8)
    mask[40:, :] = 0  # the lower third: the robot
    mask[:, 60:68] = 0  # and the mount's pole
    PILImage.fromarray(mask).save(tmp_path / "mask.png")
    node = make_node(self_mask=str(tmp_path / "mask.png"), output_size="network", points__stride=1,
                     points__rgb=False, scan__elevation_min_deg=-60.0, scan__elevation_max_deg=0.0)
    harness.subscribe(["depth", "points", "scan"])
    pub = harness.publisher(profile=qos(depth=10))
    _, out = send_until_outputs(harness, pub, lambda s: rgb_image_msg(real_sample, s, "cam"),
                                ["depth", "points", "scan"])
    depth = depth_of(out["depth"])
    np.testing.assert_array_equal(np.isnan(depth), mask == 0)
    assert not np.isnan(depth[mask == 255]).any()
    points = np.frombuffer(out["points"].data, np.float32).reshape(-1, 3)
    assert len(points) == int(np.isfinite(depth).sum())  # no point from a masked pixel
    spec = LaserScanSpec(angle_increment=math.radians(0.5), elevation_min_deg=-60.0, elevation_max_deg=0.0)
    np.testing.assert_allclose(np.asarray(out["scan"].ranges, np.float32), laser_scan(depth, spec), rtol=1e-6)
    unmasked = laser_scan(np.where(np.isnan(depth), 0.2, depth), spec)  # as if the robot's pixels were obstacles
    assert np.any(np.asarray(out["scan"].ranges) != unmasked)
    harness.spin_until(lambda: node._last_filtered == int((mask == 0).sum()), 5.0, "the filtered pixel count")


def test_a_tilted_mount_turns_the_points_into_frame_id(harness, make_node, real_sample):
    make_node(mount_rpy_deg=[20.0, -10.0, 90.0], output_size="network", points__stride=1, points__rgb=False,
              points__organized=True)
    harness.subscribe(["depth", "points"])
    pub = harness.publisher(profile=qos(depth=10))
    _, out = send_until_outputs(harness, pub, lambda s: rgb_image_msg(real_sample, s, "cam"), ["depth", "points"])
    depth = depth_of(out["depth"])
    points = np.frombuffer(out["points"].data, np.float32).reshape(64, 128, 3)
    expected = depth[..., None] * (ray_directions(64, 128).astype(np.float64) @ rpy_deg_matrix([20, -10, 90]).T)
    finite = np.isfinite(depth)
    np.testing.assert_allclose(points[finite], expected[finite], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("content, fragment", [
    ("layout: side_by_side\nimage_size: [240, 120]\n", "lenses is missing"),
    ("layout: side_by_side\nimage_size: [240, 120]\nlenses:\n"
     "  - {model: equidistant, center: [60, 60], focal: 34, fov_deg: 300}\n"
     "  - {model: equidistant, center: [60, 60], focal: 34, fov_deg: 200}\n", "lenses[0].fov_deg must lie in"),
])
def test_a_bad_calibration_stops_the_node_at_start_naming_the_key(make_node, tmp_path, content, fragment):
    from dap_ros.ros.node import EXIT_PARAMETERS

    path = tmp_path / "bad.yaml"
    path.write_text(content)
    node = make_node(start=False, input_projection="dual_fisheye", fisheye_calibration=str(path))
    assert node.start() == EXIT_PARAMETERS
    message = str(node.startup_error)
    assert fragment in message and str(path) in message and "\n" not in message
    assert message.startswith("camera parameters")
