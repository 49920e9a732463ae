"""Nothing the user has is lost: --overwrite replaces only bags we could have written (never the
input bag), failed runs leave no partial bag behind, and infer never overwrites silently."""
from __future__ import annotations

import shutil
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("rosbags", reason="bags need rosbags (pip install -e .[eval])")

from dap_ros.cli.main import main  # noqa: E402
from dap_ros.evaluation import bags  # noqa: E402
from dap_ros.evaluation.makebag import make_bag  # noqa: E402
from dap_ros.evaluation.runner import EvalOptions, evaluate_bag  # noqa: E402
from dap_ros.ros.params import resolve_params  # noqa: E402

TINY = ["--model-config", "tiny", "--random-weights", "--input-size", "64x128"]
TINY_PARAMS = {"model_config": "tiny", "allow_random_weights": True, "input_height": 64, "input_width": 128,
               "device": "cpu"}


def _pano(path, seed=0, height=32, width=64):
    rgb = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(path)
    return path


def _images(folder, n=3):
    folder.mkdir(parents=True, exist_ok=True)
    return [_pano(folder / f"p{i}.png", seed=i) for i in range(n)]


def _make_bag_cli(output, images, *extra):
    return main(["make-bag", str(output), "--images", *map(str, images), "--no-progress", *extra])


def _frames(bag, topic="/camera/image"):
    with bags.FrameSource(bag, topic) as source:
        return len(list(source))


class _NoModel:
    """Stands in for DepthPredictor.from_spec: a test using it must fail before any model is loaded."""

    @staticmethod
    def from_spec(*args, **kwargs):
        raise AssertionError("the model was loaded before the arguments were checked")


# --- --overwrite replaces only a bag we could have written ---------------------------------------

def test_overwrite_refuses_a_user_folder_and_keeps_its_files(tmp_path, capsys):
    images = _images(tmp_path / "rgb")
    user = tmp_path / "userdir"
    user.mkdir()
    (user / "thesis.tex").write_text("years of work")
    assert _make_bag_cli(user, images, "--overwrite") == 2
    err = capsys.readouterr().err
    assert "not a bag" in err and err.count("\n") == 1
    assert (user / "thesis.tex").read_text() == "years of work"
    # a bag folder with a foreign file in it is not ours either
    bag = tmp_path / "bag"
    assert _make_bag_cli(bag, images) == 0
    (bag / "notes.txt").write_text("mine")
    assert _make_bag_cli(bag, images, "--overwrite") == 2
    assert (bag / "notes.txt").is_file()
    # nor is a file that only has a bag's suffix
    fake = tmp_path / "fake.mcap"
    fake.write_text("not an mcap file")
    assert _make_bag_cli(fake, images, "--overwrite") == 2
    assert fake.read_text() == "not an mcap file"


@pytest.mark.parametrize("name, storage", [("bag", "sqlite3"), ("bag.mcap", "mcap")])
def test_overwrite_replaces_our_own_bag(tmp_path, name, storage):
    images = _images(tmp_path / "rgb")
    bag = tmp_path / name
    assert _make_bag_cli(bag, images[:1], "--storage", storage) == 0
    assert _make_bag_cli(bag, images[:1], "--storage", storage) == 2  # exists, no --overwrite
    assert _make_bag_cli(bag, images, "--storage", storage, "--overwrite") == 0
    assert _frames(bag) == 3


def test_overwrite_replaces_a_single_mcap_file(tmp_path):
    images = _images(tmp_path / "rgb")
    make_bag(images[:1], [None], tmp_path / "made", storage="mcap", progress=False)
    single = tmp_path / "single.mcap"
    shutil.copy(tmp_path / "made" / "made.mcap", single)
    assert bags.is_written_bag(single)
    assert _make_bag_cli(single, images, "--overwrite") == 0
    assert _frames(single) == 3


def test_eval_bag_never_replaces_or_writes_into_its_input_bag(tmp_path, capsys, monkeypatch):
    import dap_ros.pipeline

    monkeypatch.setattr(dap_ros.pipeline, "DepthPredictor", _NoModel)
    images = _images(tmp_path / "rgb")
    bag = tmp_path / "bags" / "x"
    make_bag(images, [None] * 3, bag, progress=False)
    before = sorted((p.name, p.stat().st_size) for p in bag.iterdir())
    for output in (bag, bag / "out", tmp_path / "bags"):
        code = main(["eval-bag", str(bag), "--image-topic", "/camera/image", "--report-dir", str(tmp_path / "r"),
                     "--output-bag", str(output), "--overwrite", "--no-progress", *TINY])
        err = capsys.readouterr().err
        assert code == 2 and "input bag" in err and err.count("\n") == 1, err
    assert sorted((p.name, p.stat().st_size) for p in bag.iterdir()) == before
    assert _frames(bag) == 3


def test_writer_refuses_its_input_through_a_symlink(tmp_path):
    images = _images(tmp_path / "rgb", 1)
    bag = tmp_path / "x"
    make_bag(images, [None], bag, progress=False)
    link = tmp_path / "link"
    link.symlink_to(bag)
    with pytest.raises(bags.BagError, match="input bag"):
        bags.BagWriter(link, overwrite=True, inputs=[bag])
    assert _frames(bag) == 1


# --- a failed run leaves no partial bag ----------------------------------------------------------

def _leftovers(folder, name):
    return sorted(p.name for p in folder.iterdir() if name in p.name)


def test_make_bag_failing_midway_leaves_nothing_and_a_rerun_works(tmp_path, capsys):
    images = _images(tmp_path / "rgb", 4)
    corrupt = tmp_path / "rgb" / "p2.png"
    good = corrupt.read_bytes()
    corrupt.write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    out = tmp_path / "out"
    assert _make_bag_cli(out, images) == 2
    assert "p2.png" in capsys.readouterr().err
    assert _leftovers(tmp_path, "out") == []
    corrupt.write_bytes(good)
    assert _make_bag_cli(out, images) == 0
    assert _leftovers(tmp_path, "out") == ["out"] and _frames(out) == 4


def test_a_failed_overwrite_keeps_the_previous_bag(tmp_path):
    images = _images(tmp_path / "rgb", 3)
    out = tmp_path / "out.mcap"
    assert _make_bag_cli(out, images[:2]) == 0
    images[1].write_bytes(b"garbage")
    assert _make_bag_cli(out, images, "--overwrite") == 2
    assert _frames(out) == 2 and _leftovers(tmp_path, "out") == ["out.mcap"]


def _killed_writer(target):
    """A process that starts writing ``target`` and is killed (os._exit: no clean-up, the kernel drops its lock)."""
    code = (f"import os; from dap_ros.evaluation import bags; w = bags.BagWriter({str(target)!r}); "
            "w.add_topic('/camera/image', bags.IMAGE, bags.qos_profile()); os._exit(9)")
    assert subprocess.run([sys.executable, "-c", code], timeout=120).returncode == 9


def test_a_partial_bag_left_by_a_killed_run_does_not_block_the_rerun(tmp_path):
    images = _images(tmp_path / "rgb", 2)
    out = tmp_path / "out"
    _killed_writer(out)
    assert not out.exists() and bags.partial_path(out).parent.is_dir()
    assert _make_bag_cli(out, images) == 0
    assert _leftovers(tmp_path, "out") == ["out"] and _frames(out) == 2


def test_something_else_at_the_partial_name_is_left_alone(tmp_path, capsys):
    images = _images(tmp_path / "rgb", 1)
    partial = tmp_path / ".out.partial"
    partial.mkdir()
    (partial / "keep.txt").write_text("mine")
    assert _make_bag_cli(tmp_path / "out", images) == 2
    assert ".out.partial" in capsys.readouterr().err and (partial / "keep.txt").is_file()


class _Broken:
    """A predictor that fails outside the per-frame error handling (an internal error)."""

    input_size = (64, 128)

    def output_size(self, rgb):
        raise RuntimeError("internal error")


def test_eval_bag_output_bag_is_removed_when_the_run_fails(tmp_path):
    pytest.importorskip("rclpy", reason="the output bag is built with rclpy message builders")
    images = _images(tmp_path / "rgb", 2)
    bag = tmp_path / "in"
    make_bag(images, [None] * 2, bag, progress=False)
    out = tmp_path / "out"
    options = EvalOptions(bag=bag, image_topic="/camera/image", output_bag=out, progress=False)
    with pytest.raises(RuntimeError, match="internal error"):
        evaluate_bag(options, _Broken(), resolve_params(None, TINY_PARAMS))
    assert _leftovers(tmp_path, "out") == []


# --- infer never overwrites silently -------------------------------------------------------------

def test_infer_refuses_existing_outputs_before_loading_the_model(tmp_path, capsys, monkeypatch):
    import dap_ros.pipeline

    image = _pano(tmp_path / "pano.png", height=64, width=128)
    out = tmp_path / "out"
    out.mkdir()
    (out / "pano_range.npy").write_bytes(b"precious")
    monkeypatch.setattr(dap_ros.pipeline, "DepthPredictor", _NoModel)
    assert main(["infer", str(image), "-o", str(out), *TINY]) == 2
    err = capsys.readouterr().err
    assert "pano_range.npy" in err and "--overwrite" in err and err.count("\n") == 1
    assert (out / "pano_range.npy").read_bytes() == b"precious"
    blocked = tmp_path / "file"
    blocked.write_text("not a folder")
    assert main(["infer", str(image), "-o", str(blocked), *TINY]) == 2
    assert f"--output-dir {blocked} is a file, not a directory" in capsys.readouterr().err
    monkeypatch.undo()
    assert main(["infer", str(image), "-o", str(out), "--overwrite", "--no-ply", *TINY]) == 0
    assert np.load(out / "pano_range.npy").shape == (64, 128)


def test_infer_gives_inputs_with_the_same_stem_unique_names(tmp_path, capsys):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    inputs = [_pano(tmp_path / "a/x.png", 1, 64, 128), _pano(tmp_path / "b/x.png", 2, 64, 128),
              _pano(tmp_path / "x_1.png", 3, 64, 128)]
    out = tmp_path / "out"
    assert main(["infer", *map(str, inputs), "-o", str(out), "--no-ply", *TINY]) == 0
    captured = capsys.readouterr().out
    assert "3 of 3 images written" in captured
    stems = sorted(p.name[: -len("_range.npy")] for p in out.glob("*_range.npy"))
    assert len(stems) == 3 and "x" in stems and "x_1" in stems
    renamed = next(s for s in stems if s not in ("x", "x_1"))
    assert f"{inputs[1]} -> {renamed}_*" in captured  # the name used is reported


def test_infer_writes_an_images_outputs_all_or_none(tmp_path, capsys, monkeypatch):
    """A disk that fills up half-way through one image's files leaves the previous run's files of
    that image as they were (--overwrite), no partial file, and the other images' files written."""
    import errno

    import dap_ros.io

    images = [_pano(tmp_path / f"p{i}.png", i, 64, 128) for i in range(2)]
    out = tmp_path / "out"
    assert main(["infer", str(images[0]), "-o", str(out), *TINY]) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    assert len(before) == 5
    real = dap_ros.io.save_mask_png

    def full_disk_for_p0(path, mask):
        if path.name.startswith(".p0_"):
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        real(path, mask)

    monkeypatch.setattr(dap_ros.io, "save_mask_png", full_disk_for_p0)
    assert main(["infer", *map(str, images), "-o", str(out), "--overwrite", *TINY]) == 1
    assert "outputs of " + str(images[0]) + " not written" in capsys.readouterr().out
    after = {p.name: p.read_bytes() for p in out.iterdir()}
    assert {name: after[name] for name in before} == before  # p0's files untouched
    assert sorted(set(after) - set(before)) == sorted(f"p1{s}" for s in ("_range.npy", "_range_mm.png", "_mask.png",
                                                                             "_depth_color.png", ".ply"))


def test_a_second_writer_of_the_same_bag_is_refused_while_the_first_writes(tmp_path, capsys):
    """Two runs with one output: the second must neither clear the first's partial bag nor mix into
    it; once the first is done (or killed: the kernel drops its lock), the target is free again."""
    target = tmp_path / "out.mcap"
    first = bags.BagWriter(target)
    with pytest.raises(bags.BagError, match="another dap-ros process is writing"):
        bags.BagWriter(target)
    images = _images(tmp_path / "imgs", 1)
    assert _make_bag_cli(target, images) == 2
    assert "another dap-ros process is writing" in capsys.readouterr().err
    first.add_topic("/t", bags.IMAGE, bags.qos_profile("reliable", 1))
    first.close()
    assert target.is_file() and not bags.partial_path(target).parent.exists()
    assert _make_bag_cli(target, images, "--overwrite") == 0
    _killed_writer(tmp_path / "k")  # its folder stays behind, its lock does not
    assert bags.partial_path(tmp_path / "k").parent.is_dir()
    bags.BagWriter(tmp_path / "k").abort()  # the stale folder is cleared, not refused
    assert not bags.partial_path(tmp_path / "k").parent.exists()
