"""`dap-ros infer` end to end: files written, their contents, and one-line errors."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from dap_ros.cli.main import main
from dap_ros.geometry import range_to_points
from dap_ros.io import load_range_png_mm, read_ply

TINY = ["--model-config", "tiny", "--random-weights", "--input-size", "64x128"]


def _pano(path, height=64, width=128, seed=0, mode="RGB"):
    data = np.random.default_rng(seed).integers(0, 255, (height, width, 3), dtype=np.uint8)
    Image.fromarray(data).convert(mode).save(path)
    return path


def test_infer_writes_consistent_files(tmp_path, capsys):
    image = _pano(tmp_path / "pano.png", 100, 200)
    out = tmp_path / "out"
    assert main(["infer", str(image), "-o", str(out), *TINY]) == 0
    range_m = np.load(out / "pano_range.npy")
    assert range_m.shape == (100, 200) and range_m.dtype == np.float32
    mm = load_range_png_mm(out / "pano_range_mm.png")
    finite = np.isfinite(range_m) & (range_m < 65.0)
    assert np.allclose(mm[finite], range_m[finite], atol=1e-3)
    mask = np.asarray(Image.open(out / "pano_mask.png"))
    assert set(np.unique(mask)) <= {0, 255}
    assert np.array_equal(mask == 255, np.isfinite(range_m))
    assert np.asarray(Image.open(out / "pano_depth_color.png")).shape == (100, 200, 3)
    points, colors = read_ply(out / "pano.ply")
    assert len(points) == np.isfinite(range_m).sum() and colors is not None
    expected = range_to_points(range_m)[np.isfinite(range_m)]
    assert np.allclose(points, expected, atol=1e-5)
    assert "1 of 1 images written" in capsys.readouterr().out


def test_several_images_keep_going_past_a_bad_one(tmp_path, capsys):
    good = [_pano(tmp_path / f"p{i}.png", seed=i) for i in range(2)]
    wide = _pano(tmp_path / "wide.png", 64, 200)
    gray = _pano(tmp_path / "gray.png", mode="L")
    out = tmp_path / "out"
    code = main(["infer", str(good[0]), str(wide), str(gray), str(good[1]), "-o", str(out), "--no-ply", *TINY])
    captured = capsys.readouterr()
    assert code == 1
    assert "skipped" in captured.out and "ratio 3.12" in captured.out
    assert "3 of 4 images written" in captured.out
    for stem in ("p0", "p1", "gray"):
        assert (out / f"{stem}_range.npy").is_file()
    assert not (out / "wide_range.npy").exists() and not list(out.glob("*.ply"))


def test_force_accepts_near_equirectangular_images(tmp_path):
    image = _pano(tmp_path / "near.png", 64, 122)  # ratio 1.91
    assert main(["infer", str(image), "-o", str(tmp_path / "a"), *TINY]) == 1
    assert main(["infer", str(image), "-o", str(tmp_path / "b"), "--force", *TINY]) == 0
    assert np.load(tmp_path / "b" / "near_range.npy").shape == (64, 122)


def test_missing_checkpoint_is_one_line_with_the_hint(tmp_path, capsys):
    image = _pano(tmp_path / "pano.png")
    assert main(["infer", str(image), "--model-config", "tiny", "--checkpoint", str(tmp_path / "model.pth")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "DAP-weights" in err


def test_console_script_reports_a_corrupt_checkpoint_without_traceback(tmp_path):
    image = _pano(tmp_path / "pano.png")
    checkpoint = tmp_path / "model.pth"
    checkpoint.write_bytes(b"PK\x03\x04 not really a zip")
    proc = subprocess.run(
        [sys.executable, "-m", "dap_ros", "infer", str(image), "--checkpoint", str(checkpoint),
         "--model-config", "tiny"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and "cannot be read" in proc.stderr


def test_real_checkpoint_through_the_cli(reference_dir, tmp_path):
    """The parity checkpoint (official layout) loads through the CLI and gives the network's numbers."""
    folder = reference_dir / "parity_tiny"
    image = _pano(tmp_path / "pano.png")
    out = tmp_path / "out"
    args = ["infer", str(image), "-o", str(out), "--checkpoint", str(folder / "model.pth")]
    assert main([*args, "--model-config", str(folder / "config.json"), "--input-size", "64x128", "--no-ply"]) == 0
    from dap_ros.model import load_model
    from dap_ros.pipeline import Preprocessor

    model = load_model(folder / "model.pth", folder / "config.json")
    x = Preprocessor((64, 128), "imagenet", torch.device("cpu"), torch.float32)(np.asarray(Image.open(image)))
    with torch.no_grad():
        out_t = model(x)
    valid = (1 - out_t["pred_mask"][0, 0].numpy()) > 0.5
    range_m = np.load(out / "pano_range.npy")
    assert np.allclose(range_m[valid], out_t["pred_depth"][0, 0].numpy()[valid] * 100, rtol=1e-5)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["infer", "missing.png", *TINY], "no such image file"),
        (["infer", "x.png", "--ply-stride", "0", *TINY], "--ply-stride"),
        (["infer", "x.png", "--model-config", "vitq", "--random-weights"], "unknown model config"),
        # one network size limit (dap_ros.settings.MAX_NETWORK_WIDTH) for every command
        (["infer", "x.png", "--model-config", "tiny", "--random-weights", "--input-size", "4096x8192"],
         "network input size must be at most 2048x4096"),
        (["export-onnx", "--model-config", "tiny", "--random-weights", "-o", "x.onnx", "--input-size",
          "100000x200000"], "input size must be at most 2048x4096 (height x width), got 100000x200000"),
    ],
)
def test_argument_errors(tmp_path, monkeypatch, capsys, argv, message):
    monkeypatch.chdir(tmp_path)
    _pano(tmp_path / "x.png")
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_bad_input_size_is_an_argparse_error(capsys):
    with pytest.raises(SystemExit) as info:
        main(["infer", "x.png", "--input-size", "big"])
    assert info.value.code == 2 and "HEIGHTxWIDTH" in capsys.readouterr().err


def test_no_checkpoint_runs_the_embedded_demo_model_and_says_so(tmp_path, caplog):
    import logging

    image = _pano(tmp_path / "pano.png", 64, 128)
    with caplog.at_level(logging.WARNING, logger="dap_ros"):
        assert main(["infer", str(image), "-o", str(tmp_path / "out"), "--no-ply"]) == 0
    assert "EMBEDDED DEMO MODEL" in caplog.text and "NOT for real robots" in caplog.text
    range_m = np.load(tmp_path / "out" / "pano_range.npy")
    assert range_m.shape == (64, 128) and np.isfinite(range_m).any()
