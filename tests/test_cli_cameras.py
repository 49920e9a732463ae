"""The camera options of the CLI: infer and eval-bag with fisheye / mount / levelling / self filter,
fisheye-to-erp, fisheye-calibrate and make-self-mask."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from dap_ros.cli.main import main
from dap_ros.geometry import ray_directions
from dap_ros.geometry.rotation import rpy_deg_matrix
from dap_ros.io import read_ply
from dap_ros.pipeline.camera import Camera
from dap_ros.settings import CameraSpec
from tests import camera_renders as renders

TINY = ["--model-config", "tiny", "--random-weights", "--input-size", "64x128"]


@pytest.fixture(scope="module")
def fisheye(tmp_path_factory):
    """A 240x120 side_by_side dual-fisheye frame of the test room and its calibration file."""
    folder = tmp_path_factory.mktemp("fisheye")
    calibration = renders.calibration(size=120)
    frame = renders.fisheye_frame(renders.scene(), calibration)
    lenses = [{"model": lens.model, "center": list(lens.center), "focal": lens.focal, "fov_deg": lens.fov_deg,
               "rpy_deg": list(lens.rpy_deg)} for lens in calibration.lenses]
    (folder / "cal.yaml").write_text(yaml.safe_dump({"layout": "side_by_side", "image_size": [240, 120],
                                                     "lenses": lenses}))
    Image.fromarray(frame).save(folder / "frame.png")
    return folder


def test_fisheye_to_erp_writes_the_remapped_panorama(fisheye, tmp_path, capsys):
    out = tmp_path / "pano.png"
    assert main(["fisheye-to-erp", str(fisheye / "frame.png"), "--calibration", str(fisheye / "cal.yaml"),
                 "-o", str(out), "--size", "64x128"]) == 0
    panorama = np.asarray(Image.open(out))
    camera = Camera(CameraSpec(projection="dual_fisheye", fisheye_calibration=str(fisheye / "cal.yaml")),
                    torch.device("cpu"))
    frame = np.asarray(Image.open(fisheye / "frame.png"))
    np.testing.assert_array_equal(panorama, camera.panorama(camera.sources(frame), (64, 128), camera.view()))
    level, _ = renders.panorama(renders.scene(), 64, 128)
    assert renders.psnr(panorama, level, np.abs(ray_directions(64, 128)[..., 2]) < 0.95) > 25.0
    assert main(["fisheye-to-erp", str(fisheye / "frame.png"), "--calibration", str(fisheye / "cal.yaml"),
                 "-o", str(out)]) == 2  # exists
    assert "exists" in capsys.readouterr().err


def test_fisheye_to_erp_converts_a_bag(fisheye, tmp_path):
    from dap_ros.evaluation import bags
    from dap_ros.evaluation.makebag import make_bag

    make_bag([fisheye / "frame.png"] * 3, [None] * 3, tmp_path / "in", progress=False)
    assert main(["fisheye-to-erp", "--bag", str(tmp_path / "in"), "--image-topic", "/camera/image",
                 "--calibration", str(fisheye / "cal.yaml"), "-o", str(tmp_path / "out")]) == 0
    with bags.FrameSource(tmp_path / "out", "/camera/image_erp") as source:
        frames = list(source)
    assert len(frames) == 3 and (frames[0].image.height, frames[0].image.width) == (60, 120)


def test_fisheye_calibrate_finds_the_image_circles(fisheye, tmp_path, capsys):
    out = tmp_path / "estimated.yaml"
    assert main(["fisheye-calibrate", str(fisheye / "frame.png"), "--threshold", "2", "-o", str(out)]) == 0
    estimated = yaml.safe_load(out.read_text())
    truth = yaml.safe_load((fisheye / "cal.yaml").read_text())
    assert estimated["image_size"] == [240, 120]
    for lens, true in zip(estimated["lenses"], truth["lenses"]):
        assert np.allclose(lens["center"], true["center"], atol=1.5)
        assert abs(lens["focal"] - true["focal"]) / true["focal"] < 0.05
    assert main(["fisheye-calibrate", str(fisheye / "frame.png"), "--fov", "60"]) == 2
    assert "--fov must lie in" in capsys.readouterr().err


def test_infer_with_a_fisheye_camera_and_a_tilted_mount(fisheye, tmp_path):
    assert main(["infer", str(fisheye / "frame.png"), "--fisheye-calibration", str(fisheye / "cal.yaml"),
                 "-o", str(tmp_path / "fish"), *TINY]) == 0
    assert np.load(tmp_path / "fish" / "frame_range.npy").shape == (60, 120)
    level, _ = renders.panorama(renders.scene(), 64, 128)
    Image.fromarray(level).save(tmp_path / "level.png")
    torch.manual_seed(0)
    assert main(["infer", str(tmp_path / "level.png"), "--mount-rpy", "0", "30", "0", "-o", str(tmp_path / "tilt"),
                 "--mask-threshold", "0.01", *TINY]) == 0
    range_m = np.load(tmp_path / "tilt" / "level_range.npy")
    points, _ = read_ply(tmp_path / "tilt" / "level.ply")
    rays = ray_directions(64, 128).astype(np.float64) @ rpy_deg_matrix([0, 30, 0]).T  # leveling none: turned
    expected = (range_m[..., None] * rays)[np.isfinite(range_m)]
    np.testing.assert_allclose(points, expected, rtol=1e-5, atol=1e-5)
    assert main(["infer", str(tmp_path / "level.png"), "--leveling", "static", "--mount-rpy", "0", "30", "0",
                 "--self-mask", str(tmp_path / "none.png"), "-o", str(tmp_path / "x"), *TINY]) == 2


def test_eval_bag_with_a_fisheye_camera(fisheye, tmp_path):
    from dap_ros.evaluation.makebag import make_bag

    make_bag([fisheye / "frame.png"] * 2, [None] * 2, tmp_path / "bag", progress=False)
    report = tmp_path / "report"
    assert main(["eval-bag", str(tmp_path / "bag"), "--image-topic", "/camera/image", "--report-dir", str(report),
                 "--fisheye-calibration", str(fisheye / "cal.yaml"), "--leveling", "static", "--no-plots",
                 "--no-progress", "--output-bag", str(tmp_path / "out"), *TINY]) == 0
    doc = json.loads((report / "metrics.json").read_text())
    assert doc["run"]["frames_processed"] == 2 and doc["run"]["failures"] == []
    from dap_ros.evaluation import bags

    with bags.FrameSource(tmp_path / "out", "/camera/depth") as source:
        depth = next(iter(source)).image
    assert (depth.height, depth.width) == (60, 120)


def test_make_self_mask(fisheye, tmp_path, capsys):
    level, _ = renders.panorama(renders.scene(), 64, 128)
    paths = []
    for i in range(2):
        path = tmp_path / f"f{i}.png"
        Image.fromarray(np.roll(level, 20 * i, axis=1)).save(path)
        paths.append(str(path))
    out = tmp_path / "mask.png"
    # random weights give ~53 m everywhere (in range at threshold 0.01), about the same in every frame:
    # with --near 100 all of it is "the robot"
    assert main(["make-self-mask", *paths, "-o", str(out), "--near", "100", "--spread", "1", *TINY,
                 "--mask-threshold", "0.01"]) == 0
    mask = np.asarray(Image.open(out))
    assert mask.shape == (64, 128) and not mask.any()
    assert main(["make-self-mask", *paths, "-o", str(tmp_path / "m2.png"), "--near", "0.5", *TINY,
                 "--mask-threshold", "0.01"]) == 0
    assert np.asarray(Image.open(tmp_path / "m2.png")).min() == 255
    assert "0.0% of the panorama" in capsys.readouterr().out
