"""dap-ros eval-dataset: each published layout written by the test, the paper protocol against the
official definitions computed here independently (OpenCV + torch, the way the official loaders and
test/metrics_st.py do it), the standard protocol against eval-bag on a bag of the same frames, and
kill-and-resume."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

cv2 = pytest.importorskip("cv2", reason="the paper protocol needs OpenCV (pip install -e .[eval])")
pytest.importorskip("rosbags", reason="make-bag / eval-bag need rosbags (pip install -e .[eval])")

from dap_ros.cli.main import main as cli_main  # noqa: E402
from dap_ros.errors import ConfigError  # noqa: E402
from dap_ros.evaluation import dataset_runner, datasets, paper  # noqa: E402
from dap_ros.evaluation.dataset_report import write_report  # noqa: E402
from dap_ros.evaluation.dataset_runner import DatasetOptions, evaluate, open_run  # noqa: E402

SIZE = (64, 128)  # network size of the tests; the files are larger, so every resize is exercised
MODEL = {"model": "formula"}
LAYOUTS = ("stanford2d3d", "matterport3d", "deep360", "insta23k", "list")


# --------------------------------------------------------------------------- dataset folders


def _rgb(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Smooth colours plus noise: the bicubic resize has something to do, values stay varied."""
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([127 + 100 * np.sin(xx / 9.0 + k) * np.cos(yy / 7.0 - k) for k in range(3)], -1)
    return np.clip(base + rng.normal(0, 25, (h, w, 3)), 0, 255).astype(np.uint8)


def _depth(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    d = rng.uniform(0.3, 40.0, (h, w))
    d[: h // 8] = 250.0  # far (sky): > 100 m
    return d


def _write_png(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    image = array[..., ::-1] if array.ndim == 3 else array  # cv2 writes BGR
    assert cv2.imwrite(str(path), image)


def _write_exr(path: Path, metres: np.ndarray) -> None:
    import OpenEXR

    path.parent.mkdir(parents=True, exist_ok=True)
    header = {"compression": OpenEXR.ZIP_COMPRESSION, "type": OpenEXR.scanlineimage}
    with OpenEXR.File(header, {"Y": metres.astype(np.float32)}) as f:
        f.write(str(path))


def write_dataset(name: str, root: Path, n: int = 3, seed: int = 0) -> Path:
    """A small folder in ``name``'s published layout with its split file; returns the split file."""
    rng = np.random.default_rng(seed)
    lines = []
    for i in range(n):
        h, w = 128, 256
        if name == "stanford2d3d":
            rgb_rel, depth_rel = f"area_5a/pano/rgb/camera_{i}_rgb.png", f"area_5a/pano/depth/camera_{i}_depth.png"
            raw = np.round(_depth(rng, h, w) * 512).clip(0, 65535).astype(np.uint16)
            raw[:, :9] = 0  # missing
            raw[-9:, :] = 65535  # no return
            _write_png(root / depth_rel, raw)
        elif name == "matterport3d":
            rgb_rel = f"scan{i}/{i}_spherical_1_emission_center_0.png"
            depth_rel = f"scan{i}/{i}_spherical_1_depth_center_0.exr"
            d = _depth(rng, h, w).astype(np.float32)
            d[:, :9] = 0.0
            d[-5:, :] = np.nan
            _write_exr(root / depth_rel, d)
        elif name == "deep360":
            h, w = 256, 128  # Cassini: twice as high as wide
            rgb_rel = f"/ep1_500frames/testing/rgb/{i:06d}_12_rgb1.png"
            depth_rel = f"/ep1_500frames/testing/depth/{i:06d}_depth.npz"
            d = _depth(rng, h, w).astype(np.float32)
            d[:7, :] = 1000.0  # sky
            (root / depth_rel[1:]).parent.mkdir(parents=True, exist_ok=True)
            np.savez_compressed(root / depth_rel[1:], d)
        elif name == "insta23k":
            rgb_rel, depth_rel = f"raw/panorama_{i}.png", f"npy/erp_distance_{i}.npy"
            (root / "npy").mkdir(parents=True, exist_ok=True)
            np.save(root / depth_rel, _depth(rng, h, w).astype(np.float32))
        else:  # list: 16-bit millimetres
            rgb_rel, depth_rel = f"rgb/{i}.png", f"depth/{i}.png"
            _write_png(root / depth_rel, np.round(_depth(rng, h, w) * 1000).clip(0, 65535).astype(np.uint16))
        _write_png(root / rgb_rel.lstrip("/"), _rgb(rng, h, w))
        lines.append(f"{rgb_rel} {depth_rel}" + (" mm" if name == "list" else ""))
    split = root / "split.txt"
    split.write_text("\n".join(lines) + "\n")
    return split


# --------------------------------------------------------------------------- a network with known outputs


class FormulaNetwork:
    """Stands in for the model: its outputs are a formula of the uint8 input it receives, so the test
    can compute what the official pipeline would score without sharing code with dap_ros."""

    input_size = SIZE
    max_range = 100.0

    @staticmethod
    def outputs(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        x = rgb.astype(np.float32) / 255.0
        depth = 0.004 + 0.3 * x[..., 0] * x[..., 2]  # 0.4 m ... 30 m
        beyond = x[..., 1] ** 3  # > 0.5 (beyond range) where green is bright
        return depth, beyond

    def network_outputs(self, rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        assert rgb.shape == (*SIZE, 3) and rgb.dtype == np.uint8
        return self.outputs(rgb)


# --------------------------------------------------------------------------- the official pipeline, written here


def official_cassini(image: np.ndarray) -> np.ndarray:
    """Cassini -> ERP with torch grid_sample (bilinear, align_corners=True, border), like the official loader."""
    src = torch.from_numpy(np.ascontiguousarray(image.astype(np.float32)))
    src = src[None, None] if src.ndim == 2 else src.permute(2, 0, 1)[None]
    cas_h, cas_w = src.shape[-2:]
    erp_h, erp_w = cas_w, cas_h
    lon = np.arange(np.pi - np.pi / erp_w, -np.pi, -2 * np.pi / erp_w).astype(np.float32)[None, :].repeat(erp_h, 0)
    lat = np.arange(np.pi / 2 - np.pi / 2 / erp_h, -np.pi / 2, -np.pi / erp_h).astype(np.float32)[:, None]
    lat = lat.repeat(erp_w, 1)
    lon_c = np.arctan2(np.tan(lat), np.cos(lon))
    lat_c = np.arcsin(np.cos(lat) * np.sin(lon))
    grid = torch.from_numpy(np.stack([np.clip(-lat_c / (np.pi / 2), -1, 1), np.clip(-lon_c / np.pi, -1, 1)], -1))
    out = F.grid_sample(src, grid[None].float(), mode="bilinear", align_corners=True, padding_mode="border")[0]
    out = out.permute(1, 2, 0).numpy()
    out = out[..., 0] if image.ndim == 2 else out
    return out.astype(image.dtype)


def official_gt(name: str, path: Path, scale: float) -> np.ndarray:
    if name == "stanford2d3d":
        raw = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        return cv2.resize(raw, (SIZE[1], SIZE[0]), interpolation=cv2.INTER_NEAREST).astype(float) / 512
    if name == "matterport3d":
        import OpenEXR

        with OpenEXR.File(str(path)) as f:
            metres = np.array(next(iter(f.channels().values())).pixels, dtype=np.float32)
    elif name == "deep360":
        metres = official_cassini(np.load(path)["arr_0"].astype(np.float32))
    elif name == "insta23k":
        metres = np.load(path).astype(np.float32)
    else:
        metres = cv2.imread(str(path), cv2.IMREAD_UNCHANGED).astype(np.float32) * scale
        metres[metres == 0] = np.nan
    return cv2.resize(metres, (SIZE[1], SIZE[0]), interpolation=cv2.INTER_NEAREST)


def official_numbers(name: str, root: Path, split: Path) -> dict[str, float]:
    """test/eval.py + metrics_st.py on FormulaNetwork, per the official definitions."""
    per_image = []
    for line in split.read_text().splitlines():
        rgb_rel, depth_rel, *rest = line.split()
        rgb_path = Path(str(root) + rgb_rel) if name == "deep360" else root / rgb_rel
        depth_path = Path(str(root) + depth_rel) if name == "deep360" else root / depth_rel
        rgb = cv2.cvtColor(cv2.imread(str(rgb_path)), cv2.COLOR_BGR2RGB)
        if name == "deep360":
            rgb = official_cassini(rgb)
        rgb = cv2.resize(rgb, (SIZE[1], SIZE[0]), interpolation=cv2.INTER_CUBIC)
        depth, beyond = FormulaNetwork.outputs(rgb)
        pred = torch.from_numpy(depth)
        keep = (1 - torch.from_numpy(beyond)) > 0.5
        pred[~keep] = 1
        gt = official_gt(name, depth_path, 0.001)
        clamp = 101.0 if name in ("stanford2d3d", "matterport3d") else 100.0
        gt[gt > clamp] = clamp
        g = torch.from_numpy(np.asarray(gt)).to(torch.float32)
        valid = (g > 0) & (g <= 100) & ~torch.isnan(g)
        g = torch.clip(g / 100, 0.001, 1.0)[valid]
        p = pred[valid]
        thresh = torch.max(g / p, p / g)
        per_image.append({
            "abs_": torch.mean(torch.abs(g - p)), "abs_rel": torch.mean(torch.abs(g - p) / g),
            "sq_rel": torch.mean((g - p) ** 2 / g), "rms": torch.sqrt((g - p) ** 2).mean(),
            "log_rms": torch.sqrt((torch.log10(g) - torch.log10(p)) ** 2).mean(),
            "log10": torch.mean(torch.abs(torch.log10(p / g))),
            "a1": (thresh < 1.25).float().mean(), "a2": (thresh < 1.25 ** 2).float().mean(),
            "a3": (thresh < 1.25 ** 3).float().mean(),
        })
    return {k: float(np.mean([float(m[k]) for m in per_image])) for k in paper.PAPER_METRICS}


def _options(name: str, root: Path, split: Path, report: Path, **kw) -> DatasetOptions:
    return DatasetOptions(dataset=name, root=root, split=split, report_dir=report, progress=False, **kw)


# --------------------------------------------------------------------------- tests


@pytest.mark.parametrize("name", LAYOUTS)
def test_paper_protocol_equals_the_official_definitions(tmp_path, name):
    root = tmp_path / name
    split = write_dataset(name, root)
    run = evaluate(open_run(_options(name, root, split, tmp_path / "report", protocol="paper"), MODEL, 100.0),
                   FormulaNetwork())
    doc = write_report(run, plots=False)
    expected = official_numbers(name, root, split)
    got = doc["paper"]
    assert got["images"] == 3 and got["images_without_valid_gt"] == 0 and run.complete
    for key in paper.PAPER_METRICS:
        assert got[key] == pytest.approx(expected[key], rel=2e-5, abs=1e-7), key
    assert 0.05 < got["a1"] < 0.95  # the formula network is neither right nor wrong everywhere
    assert got["rms"] == pytest.approx(got["abs_"])  # the official 'rms' is a mean absolute error
    assert doc["dataset"]["images_listed"] == 3 and "abs_rel" not in doc  # no standard block


def test_paper_ground_truth_rules():
    """cv2's nearest resize keeps the top-left sample of each 2x2 block; > clamp is clamped; the 101 m
    clamp excludes, the 100 m clamp keeps (as 1.0); 0.05 m is clipped up to 0.1 m and scored."""
    metres = np.full((4, 8), 9.0, dtype=np.float32)  # the other three samples of each block
    metres[0::2, 0::2] = [[1.0, 0.05, 7.0, 8.0], [150.0, np.nan, 0.0, 100.0]]
    for dataset, kept in (("stanford2d3d", False), ("deep360", True)):
        gt, valid = paper.ground_truth(metres, dataset, (2, 4))
        assert gt.shape == (2, 4)
        assert gt[0, 0] == pytest.approx(0.01) and valid[0, 0]
        assert gt[0, 1] == pytest.approx(0.001) and valid[0, 1]
        assert gt[1, 0] == pytest.approx(1.0) and valid[1, 0] == kept
        assert not valid[1, 1] and not valid[1, 2]  # NaN, 0
        assert gt[1, 3] == pytest.approx(1.0) and valid[1, 3]  # exactly 100 m is scored


def test_standard_protocol_equals_eval_bag_on_the_same_frames(tmp_path):
    """make-bag --dataset writes what eval-dataset reads; eval-bag on that bag scores the same."""
    root = tmp_path / "deep360"
    split = write_dataset("deep360", root)
    model = ["--input-size", "64x128", "--device", "cpu"]  # no checkpoint: the embedded demo model
    assert cli_main(["eval-dataset", "deep360", str(root), "--split", str(split), "--report-dir",
                     str(tmp_path / "ds"), "--no-progress", "--no-plots", *model]) == 0
    bag = tmp_path / "d.mcap"
    assert cli_main(["make-bag", str(bag), "--dataset", "deep360", str(root), "--split", str(split),
                     "--image-topic", "/cam/image", "--gt-topic", "/gt/depth", "--no-progress"]) == 0
    assert cli_main(["eval-bag", str(bag), "--image-topic", "/cam/image", "--gt-topic", "/gt/depth",
                     "--report-dir", str(tmp_path / "bag"), "--no-progress", "--no-plots", *model]) == 0
    ds = json.loads((tmp_path / "ds" / "metrics.json").read_text())
    eb = json.loads((tmp_path / "bag" / "metrics.json").read_text())
    for key in ("frame_mean", "pooled", "bands", "range_mask", "pixels", "error_vs_range"):
        assert ds[key] == eb[key], key
    assert ds["pixels"]["evaluated"] > 0 and ds["pixels"]["gt_beyond_range"] > 0  # the 1000 m sky rows
    assert ds["range_mask"]["tp"] + ds["range_mask"]["fn"] == ds["pixels"]["gt_beyond_range"]


def test_standard_ground_truth_meaning(tmp_path):
    """Stanford's 0 and 65535 are unknown (NaN), never 'beyond range'; Deep360's sky stays beyond."""
    root = tmp_path / "s"
    split = write_dataset("stanford2d3d", root, n=1)
    sample = datasets.read_split("stanford2d3d", root, split)[0]
    gt = datasets.ground_truth("stanford2d3d", sample)
    assert np.isnan(gt[:, :9]).all() and np.isnan(gt[-9:, :]).all()
    assert np.isfinite(gt[20:-9, 9:]).all()
    root = tmp_path / "d"
    split = write_dataset("deep360", root, n=1)
    gt = datasets.ground_truth("deep360", datasets.read_split("deep360", root, split)[0])
    assert gt.shape == (128, 256) and (gt == 1000.0).any() and not np.isnan(gt).any()


def _kill_after(images: int, argv: list[str]) -> int:
    """Run the CLI in a child that dies (os._exit, no clean-up) when it starts image ``images`` + 1."""
    code = f"""
import os, sys
from dap_ros.evaluation import dataset_runner
real = dataset_runner._evaluate
done = []
def dying(*a, **k):
    if len(done) == {images}:
        os._exit(137)
    done.append(1)
    return real(*a, **k)
dataset_runner._evaluate = dying
from dap_ros.cli.main import main
sys.exit(main({argv!r}))
"""
    return subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=600).returncode


def _comparable(doc: dict) -> dict:
    doc = dict(doc)
    for key in ("run", "latency", "plots"):
        doc.pop(key)
    doc["frames"] = [{k: v for k, v in f.items() if k != "timings_ms"} for f in doc["frames"]]
    return doc


@pytest.mark.parametrize("protocol", ["paper", "standard"])
def test_a_killed_run_resumes_to_the_same_report(tmp_path, protocol):
    root = tmp_path / "m3d"
    split = write_dataset("matterport3d", root, n=5)
    base = ["eval-dataset", "matterport3d", str(root), "--split", str(split), "--protocol", protocol,
            "--no-progress", "--model-config", "tiny", "--random-weights", "--input-size", "64x128"]
    killed = tmp_path / "killed"
    assert _kill_after(2, [*base, "--report-dir", str(killed)]) == 137
    lines = (killed / "images.jsonl").read_text().splitlines()
    assert len(lines) == 3 and not (killed / "metrics.json").exists()  # header + the two images done
    with open(killed / "images.jsonl", "a") as f:
        f.write('{"index": 2, "name": "torn wri')  # as if killed in the middle of a write
    assert cli_main([*base, "--report-dir", str(killed)]) == 0
    assert cli_main([*base, "--report-dir", str(tmp_path / "whole")]) == 0
    resumed = json.loads((killed / "metrics.json").read_text())
    whole = json.loads((tmp_path / "whole" / "metrics.json").read_text())
    assert resumed["run"]["images_resumed"] == 2 and whole["run"]["images_resumed"] == 0
    assert _comparable(resumed) == _comparable(whole)
    grids = [sorted(p.name for p in (folder / "grid").iterdir()) for folder in (killed, tmp_path / "whole")]
    assert grids[0] == grids[1] and len(grids[0]) == 4
    assert len((killed / "images.jsonl").read_text().splitlines()) == 6  # the torn line is gone


def test_resuming_with_other_settings_is_refused_and_restart_discards(tmp_path):
    root = tmp_path / "i"
    split = write_dataset("insta23k", root, n=2)
    report = tmp_path / "r"
    evaluate(open_run(_options("insta23k", root, split, report, protocol="paper"), MODEL, 100.0), FormulaNetwork())
    with pytest.raises(ConfigError, match=r"other settings \(model\)"):
        open_run(_options("insta23k", root, split, report, protocol="paper"), {"model": "another"}, 100.0)
    with pytest.raises(ConfigError, match="protocol"):
        open_run(_options("insta23k", root, split, report, protocol="standard"), MODEL, 100.0)
    run = open_run(_options("insta23k", root, split, report, protocol="paper", restart=True), {"model": "b"}, 100.0)
    assert run.log.done == {}
    run.log.close()


def test_unreadable_images_are_listed_and_retried(tmp_path, capsys):
    root = tmp_path / "s"
    split = write_dataset("stanford2d3d", root, n=3)
    depth = root / "area_5a/pano/depth/camera_1_depth.png"
    moved = depth.with_suffix(".bak")
    depth.rename(moved)
    argv = ["eval-dataset", "stanford2d3d", str(root), "--split", str(split), "--report-dir", str(tmp_path / "r"),
            "--protocol", "paper", "--no-progress", "--no-plots", "--model-config", "tiny", "--random-weights",
            "--input-size", "64x128"]
    assert cli_main(argv) == 1
    doc = json.loads((tmp_path / "r" / "metrics.json").read_text())
    failures = doc["run"]["failures"]
    assert [f["index"] for f in failures] == [1] and "depth file not found" in failures[0]["error"]
    assert doc["paper"]["images"] == 2 and not doc["run"]["complete"]
    assert "1 FAILED" in capsys.readouterr().out
    moved.rename(depth)
    (root / "area_5a/pano/rgb/camera_1_rgb.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")  # cv2 reads None
    assert cli_main(argv) == 1
    failures = json.loads((tmp_path / "r" / "metrics.json").read_text())["run"]["failures"]
    assert [f["index"] for f in failures] == [1] and "cannot read image" in failures[0]["error"]
    write_dataset("stanford2d3d", root, n=3)  # the same files again
    assert cli_main(argv) == 0
    doc = json.loads((tmp_path / "r" / "metrics.json").read_text())
    assert doc["paper"]["images"] == 3 and doc["run"]["images_resumed"] == 2 and doc["run"]["complete"]


@pytest.mark.parametrize(("args", "message"), [
    (["stanford2d3d", "{root}", "--split", "{root}/missing.txt"], "cannot read the split file"),
    (["stanford2d3d", "{root}/nowhere", "--split", "{split}"], "is not a folder"),
    (["list", "{root}", "--split", "{bad}"], "bad depth scale"),
    (["stanford2d3d", "{root}", "--split", "{split}", "--protocol", "paper", "--median-align"], "median-align"),
])
def test_bad_arguments_are_one_line_errors_before_the_model_loads(tmp_path, capsys, args, message):
    root = tmp_path / "s"
    split = write_dataset("stanford2d3d", root, n=1)
    bad = root / "bad.txt"
    bad.write_text("rgb/0.png depth/0.png furlongs\n")
    fill = {"root": root, "split": split, "bad": bad}
    argv = ["eval-dataset", *(a.format(**fill) for a in args), "--report-dir", str(tmp_path / "r"),
            "--checkpoint", str(tmp_path / "no_such.pth")]  # never reached: the model would fail to load
    assert cli_main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]


def test_the_released_network_path_runs_under_the_paper_protocol(tmp_path):
    """The real predictor (tiny random network) through the CLI: the paper block equals the official
    numbers computed from that predictor's own network outputs on the official input."""
    from dap_ros.pipeline import DepthPredictor

    root = tmp_path / "list"
    split = write_dataset("list", root, n=2)
    assert cli_main(["eval-dataset", "list", str(root), "--split", str(split), "--protocol", "paper",
                     "--report-dir", str(tmp_path / "r"), "--no-progress", "--model-config", "tiny",
                     "--random-weights", "--input-size", "64x128"]) == 0
    torch.manual_seed(0)
    predictor = DepthPredictor.create(None, "tiny", allow_random=True, input_size=SIZE, device="cpu")
    with pytest.MonkeyPatch.context() as patch:  # restores the staticmethod itself, not its function
        patch.setattr(FormulaNetwork, "outputs", staticmethod(predictor.network_outputs))
        expected = official_numbers("list", root, split)
    got = json.loads((tmp_path / "r" / "metrics.json").read_text())["paper"]
    for key in paper.PAPER_METRICS:
        assert got[key] == pytest.approx(expected[key], rel=2e-5, abs=1e-7), key
    report = (tmp_path / "r" / "report.md").read_text()
    assert "Paper protocol" in report and (tmp_path / "r" / "frames_grid.png").is_file()


def test_split_paths_follow_each_layout(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    split = tmp_path / "split.txt"
    split.write_text("# comment\n/ep/rgb/a.png /ep/depth/a.npz\n\n")
    (sample,) = datasets.read_split("deep360", root, split)
    assert sample.rgb == Path(f"{root}/ep/rgb/a.png") and sample.depth == Path(f"{root}/ep/depth/a.npz")
    split.write_text("a.png b.png /16\n")
    assert datasets.read_split("list", root, split)[0].scale == pytest.approx(1 / 16)
    assert dataset_runner.PROTOCOLS == ("standard", "paper")


def test_make_bag_dataset_keeps_the_layouts_meaning(tmp_path):
    """Stanford2D3D through make-bag --dataset: 0 and 65535 arrive as NaN (unknown), not as 128 m."""
    from dap_ros.evaluation import bags

    root = tmp_path / "s"
    split = write_dataset("stanford2d3d", root, n=2)
    bag = tmp_path / "s.mcap"
    assert cli_main(["make-bag", str(bag), "--dataset", "stanford2d3d", str(root), "--split", str(split),
                     "--image-topic", "/cam/image", "--gt-topic", "/gt/depth", "--no-progress"]) == 0
    source = bags.FrameSource(bag, "/cam/image", "/gt/depth")
    frames = list(source)
    source.close()
    assert len(frames) == 2
    for frame, sample in zip(frames, datasets.read_split("stanford2d3d", root, split)):
        gt = bags.depth_image_to_metres(frame.gt)
        np.testing.assert_array_equal(gt, datasets.ground_truth("stanford2d3d", sample))
        assert np.isnan(gt[-9:]).all() and np.isnan(gt[:, :9]).all() and np.nanmax(gt) < 100


def test_make_bag_dataset_argument_errors(tmp_path, capsys):
    root = tmp_path / "s"
    split = write_dataset("stanford2d3d", root, n=1)
    for argv, message in ((["--dataset", "nyu", str(root), "--split", str(split)], "unknown dataset 'nyu'"),
                          (["--dataset", "stanford2d3d", str(root)], "--split FILE"),
                          (["--images", str(root), "--split", str(split)], "--split goes with --dataset")):
        assert cli_main(["make-bag", str(tmp_path / "x.mcap"), *argv, "--no-progress"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0], err
    assert not (tmp_path / "x.mcap").exists()


def test_an_image_without_evaluated_pixels_is_left_out_and_counted():
    gt = np.full((2, 4), 0.5, dtype=np.float32)
    pred = np.full((2, 4), 0.25, dtype=np.float32)
    scored = paper.image_metrics(pred, gt, np.ones((2, 4), bool))
    assert scored["abs_rel"] == pytest.approx(0.5) and scored["a3"] == 0.0  # ratio 2 > 1.25^3
    assert paper.image_metrics(pred, gt, np.zeros((2, 4), bool)) is None
    summary = paper.summary([scored, None])
    assert summary["images"] == 1 and summary["images_without_valid_gt"] == 1
    assert summary["abs_rel"] == pytest.approx(0.5) and summary["log10"] == pytest.approx(np.log10(2))


def test_a_model_failure_on_one_image_is_listed_and_the_run_goes_on(tmp_path):
    class FailsOnce(FormulaNetwork):
        calls = 0

        def network_outputs(self, rgb):
            FailsOnce.calls += 1
            if FailsOnce.calls == 2:
                raise RuntimeError("CUDA error: an illegal memory access")
            return super().network_outputs(rgb)

    root = tmp_path / "i"
    split = write_dataset("insta23k", root, n=3)
    options = _options("insta23k", root, split, tmp_path / "r", protocol="paper")
    run = evaluate(open_run(options, MODEL, 100.0), FailsOnce())
    assert [f["index"] for f in run.failures] == [1] and not run.complete
    assert run.failures[0]["error"] == "RuntimeError: CUDA error: an illegal memory access"
    run = evaluate(open_run(options, MODEL, 100.0), FailsOnce())  # the rerun retries image 1 only
    assert run.complete and run.resumed == 2 and FailsOnce.calls == 4
