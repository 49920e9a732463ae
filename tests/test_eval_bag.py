"""eval-bag / make-bag on bags generated here (sqlite3 and MCAP) with rosbags.

Predictors whose output the test controls give exact metric values through the whole bag path;
the tiny random DAP checks the real pipeline, the output bag and the CLI.
"""
from __future__ import annotations

import json
import math
import sqlite3
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("rosbags", reason="eval needs rosbags (pip install -e .[eval])")

from dap_ros.cli.main import main as cli_main  # noqa: E402
from dap_ros.evaluation import bags  # noqa: E402
from dap_ros.evaluation.makebag import make_bag, pair_ground_truth  # noqa: E402
from dap_ros.evaluation.report import write_report  # noqa: E402
from dap_ros.evaluation.runner import EvalOptions, evaluate_bag, output_namespace  # noqa: E402
from dap_ros.pipeline import DepthResult, Weights  # noqa: E402
from dap_ros.ros.params import load_params_file, resolve_params  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
REAL_SAMPLE = Path(__file__).resolve().parents[1].parent / "shared/reference/real_sample"
ASSETS = REPO / "dap_ros/assets"
IMAGE_TOPIC, GT_TOPIC = "/cam/image", "/gt/depth"
TINY = {"model_config": "tiny", "allow_random_weights": True, "input_height": 64, "input_width": 128, "device": "cpu"}


class ScriptedPredictor:
    """Returns the given range images in order (+Inf beyond range), like DepthPredictor.predict."""

    weights = Weights("checkpoint", "scripted")
    backend = "scripted"
    device = "cpu"
    precision = "fp32"
    input_size = (64, 128)

    def __init__(self, outputs, interrupt_at: int | None = None):
        self.outputs = list(outputs)
        self.calls = 0
        self.interrupt_at = interrupt_at

    def output_size(self, rgb):
        return tuple(rgb.shape[:2])

    def predict(self, rgb, output_size=None, range_out=None):
        if self.interrupt_at is not None and self.calls == self.interrupt_at:
            raise KeyboardInterrupt
        out = np.asarray(self.outputs[self.calls], dtype=np.float32)
        self.calls += 1
        assert out.shape == rgb.shape[:2]
        in_range = np.isfinite(out)
        return DepthResult(out, in_range, {"preprocess": 0.0, "inference": 0.001, "postprocess": 0.0}, rgb)


def synthetic_frames(tmp: Path, n: int, shape=(32, 64), seed=0):
    from PIL import Image

    rng = np.random.default_rng(seed)
    images, gts, arrays = [], [], []
    tmp.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        image = tmp / f"pano_{i:03d}.png"
        Image.fromarray(rng.integers(0, 256, shape + (3,), dtype=np.uint8)).save(image)
        gt = rng.uniform(0.3, 99.0, shape).astype(np.float32)
        gt[0, : 3 + i] = np.inf  # sky
        gt[-1, :2] = np.nan  # invalid
        np.save(tmp / f"pano_{i:03d}.npy", gt)
        images.append(image)
        gts.append(tmp / f"pano_{i:03d}.npy")
        arrays.append(gt)
    return images, gts, arrays


def oracle(gt: np.ndarray, max_range: float = 100.0) -> np.ndarray:
    """GT in the predictor's semantics: beyond range -> +Inf, invalid stays NaN."""
    with np.errstate(invalid="ignore"):
        return np.where(np.isfinite(gt) & (gt > max_range), np.inf, gt).astype(np.float32)


def run_eval(bag: Path, predictor, tmp: Path, **kw):
    params = resolve_params(None, TINY)
    options = EvalOptions(bag=bag, image_topic=IMAGE_TOPIC, gt_topic=kw.pop("gt_topic", GT_TOPIC), progress=False, **kw)
    run = evaluate_bag(options, predictor, params)
    doc = write_report(run, tmp / "report", plots=kw.get("plots", False))
    return run, doc


def read_back(bag: Path):
    from rosbags.rosbag2 import Reader

    ts = bags.typestore("kilted")
    out: dict[str, list] = {}
    with Reader(bag) as reader:
        for conn, log_time, raw in reader.messages():
            out.setdefault(conn.topic, []).append((log_time, ts.deserialize_cdr(raw, conn.msgtype)))
        qos = {c.topic: c.ext.offered_qos_profiles for c in reader.connections}
    return out, qos


@pytest.fixture(params=["sqlite3", "mcap"])
def storage(request):
    return request.param


def test_ground_truth_as_prediction_is_exactly_perfect(tmp_path, storage):
    images, gts, arrays = synthetic_frames(tmp_path / "data", 3)
    bag = tmp_path / "in"
    made = make_bag(images, gts, bag, storage=storage, image_topic=IMAGE_TOPIC, gt_topic=GT_TOPIC, progress=False)
    assert made.frames == 3 and made.frames_with_gt == 3 and made.storage == storage
    run, doc = run_eval(bag, ScriptedPredictor(oracle(a) for a in arrays), tmp_path)
    assert doc["abs_rel"] == 0.0 and doc["sq_rel"] == 0.0 and doc["rmse"] == 0.0 and doc["rmse_log"] == 0.0
    assert doc["delta1"] == doc["delta2"] == doc["delta3"] == 1.0
    assert doc["pooled"]["rmse"] == 0.0
    mask = doc["range_mask"]
    assert mask["precision"] == mask["recall"] == mask["iou"] == 1.0
    assert mask["tp"] == sum(3 + i for i in range(3))
    assert doc["run"]["frames_with_gt"] == 3 and doc["run"]["complete"]
    assert doc["pixels"]["evaluated"] == sum(int(np.isfinite(a).sum()) for a in arrays)


@pytest.mark.parametrize("k", [2.0, 1.1])
def test_multiplicative_error_through_the_bag_gives_analytic_values(tmp_path, storage, k):
    images, gts, arrays = synthetic_frames(tmp_path / "data", 2, seed=3)
    arrays = [np.where(np.isfinite(a), np.minimum(a, 40.0), a).astype(np.float32) for a in arrays]
    for g, a in zip(gts, arrays):
        np.save(g, a)
    bag = tmp_path / "in"
    make_bag(images, gts, bag, storage=storage, image_topic=IMAGE_TOPIC, gt_topic=GT_TOPIC, progress=False)
    preds = [np.where(np.isfinite(a), a * np.float32(k), a) for a in arrays]  # <= 80 m: no clamping
    _, doc = run_eval(bag, ScriptedPredictor(preds), tmp_path, median_align=True)
    per_frame = []
    for a, p in zip(arrays, preds):
        ok = np.isfinite(a)
        g, q = a[ok].astype(np.float64), p[ok].astype(np.float64)
        per_frame.append((np.mean(np.abs(q - g) / g), np.mean((q - g) ** 2 / g), math.sqrt(np.mean((q - g) ** 2))))
    assert doc["abs_rel"] == pytest.approx(abs(k - 1), rel=1e-6)
    assert doc["rmse_log"] == pytest.approx(abs(math.log(k)), rel=1e-5)
    assert doc["sq_rel"] == pytest.approx(np.mean([f[1] for f in per_frame]), rel=1e-12)
    assert doc["rmse"] == pytest.approx(np.mean([f[2] for f in per_frame]), rel=1e-12)
    assert doc["delta1"] == (1.0 if k < 1.25 else 0.0)
    assert doc["median_aligned"]["frame_mean"]["abs_rel"] == pytest.approx(0.0, abs=1e-6)
    assert doc["median_aligned"]["scale_median"] == pytest.approx(1 / k, rel=1e-6)
    for band in doc["bands"].values():
        if band["pixels"]:
            assert band["abs_rel"] == pytest.approx(abs(k - 1), rel=1e-6)


def test_16uc1_ground_truth_of_another_size_and_compressed_input(tmp_path):
    from PIL import Image

    data = tmp_path / "data"
    data.mkdir()
    rgb = np.random.default_rng(1).integers(0, 256, (32, 64, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(data / "a.jpg", quality=95)
    gt = np.full((64, 128), 7.5, np.float32)  # twice the image size, nearest-resized to 32x64
    gt[:16] = 3.25
    np.save(data / "a.npy", gt)
    bag = tmp_path / "in.mcap"
    made = make_bag([data / "a.jpg"], [data / "a.npy"], bag, image_topic=IMAGE_TOPIC, gt_topic=GT_TOPIC,
                    compressed="jpeg", gt_encoding="16UC1", progress=False)
    assert made.storage == "mcap"
    pred = np.full((32, 64), 7.5, np.float32)
    pred[:8] = 3.25
    _, doc = run_eval(bag, ScriptedPredictor([pred]), tmp_path)
    assert doc["abs_rel"] == 0.0 and doc["pixels"]["evaluated"] == 32 * 64
    assert doc["bands"]["2-5m"]["pixels"] == 8 * 64 and doc["bands"]["5-10m"]["pixels"] == 24 * 64


def test_gt_pairing_by_stamp_and_frames_without_gt(tmp_path):
    images, gts, arrays = synthetic_frames(tmp_path / "data", 3)
    bag = tmp_path / "in"
    make_bag(images, [gts[0], None, gts[2]], bag, image_topic=IMAGE_TOPIC, gt_topic=GT_TOPIC, progress=False)
    with bags.FrameSource(bag, IMAGE_TOPIC, GT_TOPIC) as source:
        frames = list(source)
    assert [f.gt is not None for f in frames] == [True, False, True]
    assert all(bags.stamp_ns(f.gt.header) == f.stamp_ns for f in frames if f.gt is not None)
    _, doc = run_eval(bag, ScriptedPredictor([oracle(arrays[0]), arrays[1], oracle(arrays[2])]), tmp_path)
    assert doc["run"]["frames_processed"] == 3 and doc["run"]["frames_with_gt"] == 2 and doc["abs_rel"] == 0.0
    _, doc = run_eval(bag, ScriptedPredictor([oracle(arrays[0]), arrays[1]]), tmp_path, max_frames=2)
    assert doc["run"]["frames_processed"] == 2 and doc["run"]["complete"] and doc["run"]["max_frames"] == 2


@pytest.mark.parametrize("distro", ["humble", "jazzy", "kilted"])
def test_typestores(tmp_path, distro):
    images, gts, _ = synthetic_frames(tmp_path / "data", 1)
    bag = tmp_path / "in"
    make_bag(images, gts, bag, image_topic=IMAGE_TOPIC, gt_topic=GT_TOPIC, distro=distro, progress=False)
    with bags.FrameSource(bag, IMAGE_TOPIC, GT_TOPIC, distro=distro) as source:
        (frame,) = list(source)
    assert source.distro == distro and frame.image.encoding == "rgb8" and frame.gt.encoding == "32FC1"


def test_output_bag_has_input_stamps_qos_and_reads_back(tmp_path, storage):
    pytest.importorskip("rclpy", reason="the output bag is built with the node's rclpy message builders")
    from dap_ros.pipeline import DepthPredictor

    images, gts, _ = synthetic_frames(tmp_path / "data", 3, shape=(64, 128))
    bag = tmp_path / "in"
    make_bag(images, gts, bag, storage=storage, image_topic=IMAGE_TOPIC, gt_topic=GT_TOPIC, frame_id="pano_cam",
             progress=False)
    params = resolve_params(None, {**TINY, "qos.output.reliability": "best_effort", "qos.output.depth": 5})
    out = tmp_path / ("out.mcap" if storage == "mcap" else "out")
    options = EvalOptions(bag=bag, image_topic=IMAGE_TOPIC, gt_topic=GT_TOPIC, output_bag=out, progress=False)
    run = evaluate_bag(options, DepthPredictor.from_spec(params.model_spec()), params)
    assert run.output_bag["storage"] == storage
    inputs, _ = read_back(bag)
    outputs, qos = read_back(out)
    in_stamps = [bags.stamp_ns(m.header) for _, m in inputs[IMAGE_TOPIC]]
    in_times = [t for t, _ in inputs[IMAGE_TOPIC]]
    assert sorted(outputs) == ["/cam/depth", "/cam/points", "/cam/range_mask", "/cam/scan"]
    for topic, messages in outputs.items():
        assert [bags.stamp_ns(m.header) for _, m in messages] == in_stamps
        assert [t for t, _ in messages] == in_times
        assert all(m.header.frame_id == "pano_cam" for _, m in messages)
        (profile,) = qos[topic]
        assert profile.reliability.name == "BEST_EFFORT" and profile.depth == 5
        assert profile.history.name == "KEEP_LAST" and profile.durability.name == "VOLATILE"
    depth = outputs["/cam/depth"][0][1]
    assert depth.encoding == "32FC1" and (depth.height, depth.width) == (64, 128)
    assert outputs["/cam/range_mask"][0][1].encoding == "mono8"
    assert outputs["/cam/scan"][0][1].angle_min == pytest.approx(-math.pi)
    meta = (out / "metadata.yaml") if out.is_dir() else None
    if meta is not None:
        assert "offered_qos_profiles" in meta.read_text()


def test_truncated_mcap_reports_where_reading_stopped_with_metrics_so_far(tmp_path):
    images, gts, arrays = synthetic_frames(tmp_path / "data", 12, shape=(128, 256))
    bag = tmp_path / "in"
    make_bag(images, gts, bag, storage="mcap", image_topic=IMAGE_TOPIC, gt_topic=GT_TOPIC, progress=False)
    broken = tmp_path / "broken"  # a killed recording: no metadata.yaml, file cut mid-chunk
    broken.mkdir()
    data = (bag / "in.mcap").read_bytes()
    (broken / "in.mcap").write_bytes(data[: int(len(data) * 0.6)])
    _, doc = run_eval(broken, ScriptedPredictor(oracle(a) for a in arrays), tmp_path)
    err = doc["run"]["read_error"]
    n = doc["run"]["frames_processed"]
    assert 0 < n < 12 and err["kind"] == "truncated" and err["stopped_after_frame"] == n
    assert err["last_stamp_ns"] == 1_700_000_000_000_000_000 + (n - 1) * 100_000_000
    assert doc["abs_rel"] == 0.0 and doc["run"]["frames_with_gt"] == n and not doc["run"]["complete"]
    assert "reading stopped after frame" in (tmp_path / "report/report.md").read_text()


def test_corrupt_message_is_skipped_and_unreadable_bag_is_one_line_error(tmp_path, capsys):
    images, gts, arrays = synthetic_frames(tmp_path / "data", 3)
    bag = tmp_path / "in"
    make_bag(images, gts, bag, storage="sqlite3", image_topic=IMAGE_TOPIC, gt_topic=GT_TOPIC, progress=False)
    with sqlite3.connect(bag / "in.db3") as db:  # garble the second image message
        (topic_id,) = db.execute("SELECT id FROM topics WHERE name = ?", (IMAGE_TOPIC,)).fetchone()
        (msg_id,) = db.execute("SELECT id FROM messages WHERE topic_id = ? ORDER BY timestamp LIMIT 1 OFFSET 1",
                               (topic_id,)).fetchone()
        db.execute("UPDATE messages SET data = ? WHERE id = ?", (b"\x00\x01\x00\x00garbage", msg_id))
    _, doc = run_eval(bag, ScriptedPredictor([oracle(arrays[0]), oracle(arrays[2])]), tmp_path)
    assert doc["run"]["frames_processed"] == 2 and len(doc["run"]["skipped_messages"]) == 1
    assert doc["abs_rel"] == 0.0 and doc["run"]["gt_unmatched_messages"] == 1

    junk = tmp_path / "junk.db3"
    junk.write_bytes(b"this is not a bag" * 100)
    code = cli_main(["eval-bag", str(junk), "--image-topic", IMAGE_TOPIC, "--report-dir", str(tmp_path / "r"),
                     "--model-config", "tiny", "--random-weights", "--input-size", "64x128", "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and "cannot open bag" in err and "Traceback" not in err
    code = cli_main(["eval-bag", str(bag), "--image-topic", "/nope", "--report-dir", str(tmp_path / "r"),
                     "--model-config", "tiny", "--random-weights", "--input-size", "64x128", "--no-progress"])
    assert code == 2 and "/cam/image" in capsys.readouterr().err


def test_ctrl_c_writes_the_report_of_the_frames_done(tmp_path):
    images, gts, arrays = synthetic_frames(tmp_path / "data", 5)
    bag = tmp_path / "in"
    make_bag(images, gts, bag, image_topic=IMAGE_TOPIC, gt_topic=GT_TOPIC, progress=False)
    run, doc = run_eval(bag, ScriptedPredictor([oracle(a) for a in arrays], interrupt_at=3), tmp_path)
    assert run.interrupted and doc["run"]["interrupted"] and doc["run"]["frames_processed"] == 3
    assert doc["abs_rel"] == 0.0
    assert json.loads((tmp_path / "report/metrics.json").read_text())["run"]["frames_processed"] == 3


def test_output_namespace():
    assert output_namespace("/cam/image") == "/cam"
    assert output_namespace("/robot/cam/image_raw/compressed") == "/robot/cam"
    assert output_namespace("/image") == ""


def test_params_file_precedence(tmp_path):
    p = tmp_path / "p.yaml"
    p.write_text("/**:\n  ros__parameters:\n    model_config: tiny\n    max_range: 50.0\n"
                 "    qos:\n      output:\n        depth: 7\n    points:\n      enable: false\n")
    assert load_params_file(p)["qos.output.depth"] == 7
    params = resolve_params(p, {"max_range": 20.0, "model_config": None})
    assert params.model_config == "tiny" and params.max_range == 20.0 and params.qos_output_depth == 7
    assert not params.points_enable
    repo_params = resolve_params(REPO / "config/depth.yaml", {}) if (REPO / "config/depth.yaml").is_file() else None
    assert repo_params is None or repo_params.model_config == "vitl"


def test_make_bag_pairs_a_folder_by_stem(tmp_path):
    images, gts, _ = synthetic_frames(tmp_path / "data", 2)
    gt_dir = tmp_path / "depth"
    gt_dir.mkdir()
    for g in gts:
        g.rename(gt_dir / g.name.replace("pano", "depth"))
    pairs = pair_ground_truth(images, [gt_dir], ("pano", "depth"))
    assert [p.name for p in pairs] == ["depth_000.npy", "depth_001.npy"]


def test_real_sample_bag_oracle_and_tiny_model_cli(tmp_path, storage, capsys):
    """The Matterport3D sample (EXR GT) and the bundled room (16-bit mm PNG) through the CLI."""
    rgb, exr = REAL_SAMPLE / "matterport3d_rgb.png", REAL_SAMPLE / "matterport3d_depth.exr"
    if not rgb.is_file():
        pytest.fail(f"reference sample missing: {REAL_SAMPLE}")
    bag = tmp_path / ("in.mcap" if storage == "mcap" else "in")
    code = cli_main(["make-bag", str(bag), "--images", str(rgb), str(ASSETS / "sample_room.jpg"),
                     "--gt", str(exr), str(ASSETS / "sample_room_range_mm.png"), "--image-topic", IMAGE_TOPIC,
                     "--gt-topic", GT_TOPIC, "--no-progress"])
    assert code == 0
    from dap_ros.io import load_range_png_mm, read_exr_depth

    truth = [read_exr_depth(exr), load_range_png_mm(ASSETS / "sample_room_range_mm.png")]
    _, doc = run_eval(bag, ScriptedPredictor(oracle(t) for t in truth), tmp_path)
    assert doc["abs_rel"] == 0.0 and doc["rmse"] == 0.0 and doc["delta1"] == 1.0
    assert doc["pixels"]["evaluated"] == sum(int(np.isfinite(t).sum()) for t in truth)

    pytest.importorskip("rclpy", reason="--output-bag builds messages with rclpy")
    report = tmp_path / "cli_report"
    code = cli_main(["eval-bag", str(bag), "--image-topic", IMAGE_TOPIC, "--gt-topic", GT_TOPIC,
                     "--report-dir", str(report), "--output-bag", str(tmp_path / "out"), "--model-config", "tiny",
                     "--random-weights", "--input-size", "64x128", "--median-align", "--no-progress",
                     "--params", str(REPO / "config/depth.yaml")])
    assert code == 0, capsys.readouterr().err
    doc = json.loads((report / "metrics.json").read_text())
    assert doc["schema"] == "dap_ros.eval_bag" and doc["schema_version"] == 1
    for key in ("abs_rel", "sq_rel", "rmse", "rmse_log", "delta1", "delta2", "delta3"):
        assert isinstance(doc[key], float)
    assert doc["model"]["random_weights"] and doc["run"]["frames_processed"] == 2
    assert sorted(doc["plots"]) == ["abs_rel_over_time.png", "error_vs_range.png", "frames_grid.png",
                                    "latency_hist.png"]
    assert all((report / name).stat().st_size > 1000 for name in doc["plots"])
    assert "AbsRel" in (report / "report.md").read_text()
    assert "AbsRel" in capsys.readouterr().out


def _bag_with_gt_offset(tmp: Path, offset_ns: int, n: int = 2) -> Path:
    """Images at 0.5 Hz and their ground truth stamped ``offset_ns`` later (a clock offset)."""
    from PIL import Image

    images, _, arrays = synthetic_frames(tmp / "data", n, shape=(64, 128))
    bag = tmp / "offset"
    with bags.BagWriter(bag) as writer:
        ts, qos = writer.typestore, bags.qos_profile()
        writer.add_topic(IMAGE_TOPIC, bags.IMAGE, qos)
        writer.add_topic(GT_TOPIC, bags.IMAGE, qos)
        for i, (image, gt) in enumerate(zip(images, arrays)):
            stamp = 1_700_000_000_000_000_000 + i * 2_000_000_000
            msg = bags.image_message(ts, stamp, "cam", np.asarray(Image.open(image)), "rgb8")
            writer.write(IMAGE_TOPIC, stamp, writer.serialize(msg, bags.IMAGE))
            gt_msg = bags.image_message(ts, stamp + offset_ns, "cam", gt, "32FC1")
            writer.write(GT_TOPIC, stamp + offset_ns, writer.serialize(gt_msg, bags.IMAGE))
    return bag


def test_ground_truth_that_never_pairs_names_the_offset_and_fails(tmp_path, capsys):
    bag = _bag_with_gt_offset(tmp_path, 500_000_000)
    argv = ["eval-bag", str(bag), "--image-topic", IMAGE_TOPIC, "--gt-topic", GT_TOPIC, "--no-plots",
            "--no-progress", "--report-dir", str(tmp_path / "report"), "--model-config", "tiny", "--random-weights",
            "--input-size", "64x128"]
    code = cli_main(argv)
    err = capsys.readouterr().err
    assert code != 0 and "+500.0 ms" in err and "--gt-tolerance-ms 500" in err and err.count("\n") == 1, err
    assert (tmp_path / "report/metrics.json").is_file()  # the latency measured is still reported
    report = (tmp_path / "report/report.md").read_text()
    assert "No ground truth: accuracy not measured (no image paired with ground truth" in report
    assert "+500.0 ms" in report
    assert cli_main([*argv, "--gt-tolerance-ms", "500"]) == 0
    doc = json.loads((tmp_path / "report/metrics.json").read_text())
    assert doc["run"]["frames_with_gt"] == 2


class _NoModel:
    @staticmethod
    def from_spec(*args, **kwargs):
        raise AssertionError("the model was loaded before the parameters file was checked")


def test_params_file_with_an_unknown_name_is_refused_with_close_matches(tmp_path, capsys, monkeypatch):
    import dap_ros.pipeline

    monkeypatch.setattr(dap_ros.pipeline, "DepthPredictor", _NoModel)
    images, gts, _ = synthetic_frames(tmp_path / "data", 1)
    bag = tmp_path / "in"
    make_bag(images, gts, bag, image_topic=IMAGE_TOPIC, gt_topic=GT_TOPIC, progress=False)
    p = tmp_path / "p.yaml"
    p.write_text("/**:\n  ros__parameters:\n    use_sim_time: false\n    max_rnage: 50.0\n"
                 "    points:\n      strid: 4\n")
    code = cli_main(["eval-bag", str(bag), "--image-topic", IMAGE_TOPIC, "--report-dir", str(tmp_path / "r"),
                     "--params", str(p), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1, err
    assert "'max_rnage' (did you mean 'max_range'" in err and "'points.strid' (did you mean 'points.stride'" in err
    assert "use_sim_time" not in err  # ROS's own parameters are fine in a node's parameters file
