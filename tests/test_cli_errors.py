"""Hostile inputs to the sub-commands: each is one line naming the cause (exit 2), or a skipped
image with a message (exit 1) while the good ones are still processed; never a traceback."""
from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from dap_ros.cli.main import main

TINY = ["--model-config", "tiny", "--random-weights", "--input-size", "64x128"]


def _pano(path, seed=0, height=32, width=64):
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)).save(path)
    return path


def _decompression_bomb(path):
    """A valid PNG whose header claims 20000 x 20000 pixels (Pillow refuses it at open)."""
    _pano(path, height=1, width=1)
    data = bytearray(path.read_bytes())
    ihdr = struct.pack(">II", 20000, 20000) + bytes(data[24:29])  # width, height, then depth, colour, ...
    data[16:29] = ihdr
    data[29:33] = struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    path.write_bytes(bytes(data))
    return path


def _no_model_load(monkeypatch):
    """The checks under test must come before any model is loaded."""
    import dap_ros.model
    import dap_ros.pipeline

    def refuse(*args, **kwargs):
        raise AssertionError("the model was loaded before the arguments were checked")

    monkeypatch.setattr(dap_ros.model, "load_model", refuse)
    monkeypatch.setattr(dap_ros.pipeline.DepthPredictor, "from_spec", refuse)


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("dap-ros: error: "), err
    return err


def _argparse_error(capsys, argv: list[str]) -> str:
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    return capsys.readouterr().err.strip().splitlines()[-1]


# --- infer ------------------------------------------------------------------------------------------

def test_infer_skips_a_decompression_bomb_and_processes_the_others(tmp_path, capsys):
    good = [_pano(tmp_path / f"good{i}.png", seed=i) for i in range(2)]
    bomb = _decompression_bomb(tmp_path / "bomb.png")
    out = tmp_path / "out"
    assert main(["infer", str(good[0]), str(bomb), str(good[1]), "-o", str(out), "--no-ply", "--force", *TINY]) == 1
    text = capsys.readouterr().out
    (line,) = [line for line in text.splitlines() if "bomb.png" in line]
    assert "skipped" in line and "too large" in line, text
    assert "2 of 3 images written" in text
    assert all((out / f"good{i}_range.npy").is_file() for i in range(2))


def test_infer_names_a_directory_given_as_an_image(tmp_path, capsys):
    folder = tmp_path / "shots"
    folder.mkdir()
    assert main(["infer", str(folder), *TINY]) == 2
    assert f"{folder} is a directory, not an image file" in _one_line_error(capsys)


def test_infer_reports_outputs_it_cannot_write_and_goes_on(tmp_path, capsys, monkeypatch):
    import dap_ros.io

    images = [_pano(tmp_path / f"p{i}.png", seed=i) for i in range(3)]
    real = dap_ros.io.save_mask_png

    def read_only_for_p1(path, mask):
        if "p1_" in str(path):
            raise PermissionError(13, "Permission denied", str(path))
        real(path, mask)

    monkeypatch.setattr(dap_ros.io, "save_mask_png", read_only_for_p1)
    out = tmp_path / "out"
    assert main(["infer", *map(str, images), "-o", str(out), "--no-ply", "--force", *TINY]) == 1
    text = capsys.readouterr().out
    assert f"cannot write {out / 'p1_mask.png'}: Permission denied" in text, text
    assert "2 of 3 images written" in text
    assert (out / "p2_mask.png").is_file()


def test_infer_overwrite_refuses_a_directory_where_an_output_file_goes(tmp_path, capsys, monkeypatch):
    _no_model_load(monkeypatch)
    image = _pano(tmp_path / "pano.png")
    out = tmp_path / "out"
    (out / "pano_range.npy").mkdir(parents=True)
    assert main(["infer", str(image), "-o", str(out), "--overwrite", *TINY]) == 2
    assert f"{out / 'pano_range.npy'} is a directory where an output file goes" in _one_line_error(capsys)


# --- export-onnx ------------------------------------------------------------------------------------

def test_export_onnx_output_that_cannot_be_written(tmp_path, capsys, monkeypatch):
    _no_model_load(monkeypatch)
    args = ["export-onnx", "--model-config", "tiny", "--random-weights", "--height", "32", "--width", "64", "--force"]
    folder = tmp_path / "folder"
    folder.mkdir()
    assert main([*args, "-o", str(folder)]) == 2
    assert f"--output {folder} is a directory" in _one_line_error(capsys)
    a_file = tmp_path / "file"
    a_file.write_text("x")
    assert main([*args, "-o", str(a_file / "model.onnx")]) == 2
    assert f"{a_file}" in _one_line_error(capsys)


# --- make-bag and eval-bag ---------------------------------------------------------------------------

@pytest.mark.parametrize("option, value, message", [
    ("--rate", "nan", "argument --rate: expected a finite number, got 'nan'"),
    ("--rate", "0", "argument --rate: expected a number > 0, got '0'"),
    ("--start-time", "inf", "argument --start-time: expected a finite number, got 'inf'"),
])
def test_make_bag_number_arguments(tmp_path, capsys, option, value, message):
    image = _pano(tmp_path / "p.png")
    assert message in _argparse_error(capsys, ["make-bag", str(tmp_path / "bag"), "--images", str(image),
                                               option, value])


@pytest.mark.parametrize("start", ["1e30", "-1"])
def test_make_bag_stamps_must_fit_a_ros_time(tmp_path, capsys, start):
    pytest.importorskip("rosbags")
    image = _pano(tmp_path / "p.png")
    assert main(["make-bag", str(tmp_path / "bag"), "--images", str(image), "--start-time", start,
                 "--no-progress"]) == 2
    assert "a ROS stamp lies in [0, 2147483647] s" in _one_line_error(capsys)
    assert not list(tmp_path.glob("*bag*"))


def test_make_bag_named_after_its_storage_is_that_one_file(tmp_path):
    pytest.importorskip("rosbags")
    from dap_ros.evaluation import bags

    image = _pano(tmp_path / "p.png")
    for name in ("x.mcap", "x.db3"):
        assert main(["make-bag", str(tmp_path / name), "--images", str(image), str(image), "--no-progress"]) == 0
        assert (tmp_path / name).is_file(), sorted(p.name for p in tmp_path.iterdir())
        with bags.FrameSource(tmp_path / name, "/camera/image") as source:
            assert len(list(source)) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.png", "x.db3", "x.mcap"]


def test_eval_bag_number_arguments_and_report_dir(tmp_path, capsys, monkeypatch):
    pytest.importorskip("rosbags")
    from dap_ros.evaluation.makebag import make_bag

    _no_model_load(monkeypatch)
    bag = tmp_path / "in"
    make_bag([_pano(tmp_path / "p.png")], [None], bag, progress=False)
    args = ["eval-bag", str(bag), "--image-topic", "/camera/image", "--no-progress", *TINY]
    assert "argument --gt-tolerance-ms: expected a finite number, got 'nan'" in _argparse_error(
        capsys, [*args, "--report-dir", str(tmp_path / "r"), "--gt-tolerance-ms", "nan"])
    a_file = tmp_path / "report.txt"
    a_file.write_text("x")
    assert main([*args, "--report-dir", str(a_file)]) == 2
    assert f"--report-dir {a_file} is a file, not a directory" in _one_line_error(capsys)


def test_eval_bag_on_an_empty_bag_is_an_error(tmp_path, capsys):
    pytest.importorskip("rosbags")
    from dap_ros.evaluation import bags

    bag = tmp_path / "empty"
    with bags.BagWriter(bag) as writer:
        writer.add_topic("/camera/image", bags.IMAGE, bags.qos_profile("reliable", 10))
    assert main(["eval-bag", str(bag), "--image-topic", "/camera/image", "--report-dir", str(tmp_path / "r"),
                 "--no-progress", *TINY]) == 2
    assert f"no frames on topic /camera/image in {bag}" in _one_line_error(capsys)
