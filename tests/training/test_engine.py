"""The data engine end to end on a tiny model and a handful of synthetic panoramas:
(1) labeler -> (2) pseudo-labels -> (3) discriminator + top-K per domain -> (4) next model.
Every stage is run twice (or resumed from a damaged state) to check it restarts from its files."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from dap_ros.model import load_model
from training.engine.__main__ import main as engine
from training.logging_utils import read_metrics

REPO = Path(__file__).resolve().parents[2]
SMOKE = str(REPO / "training" / "configs" / "smoke.yaml")
SMALL = ["data.train.height=32", "data.train.width=64", "data.train.num_samples=6", "data.val=null",
         "data.batch_size=2", "train.max_steps=4", "train.threads=1", "logging.progress=false",
         "logging.tensorboard=false"]
LABELLED = json.dumps({"type": "synthetic", "num_samples": 4, "seed": 7, "height": 32, "width": 64})


def _unlabelled(folder: Path) -> list[Path]:
    from training.data.synthetic import render_panorama

    paths = []
    for i, kind in enumerate(["indoor", "indoor", "indoor", "outdoor", "outdoor", "outdoor"]):
        rgb = render_panorama(1000 + i, 32, 64, kind)["rgb"]
        path = folder / kind / f"pano_{i}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.asarray(rgb)).save(path)
        paths.append(path)
    return paths


def test_data_engine_chain(tmp_path):
    # (1) labeler on labelled (synthetic) data
    labeler_dir = tmp_path / "labeler"
    assert engine(["train", "--config", SMOKE, f"run.out_dir={labeler_dir}", *SMALL]) == 0
    labeler = labeler_dir / "export" / "model_final.pth"
    assert labeler.is_file()

    # (2) pseudo-labels; domain from the folder name
    _unlabelled(tmp_path / "unlabelled")
    pl = tmp_path / "pseudo"
    pl_args = ["pseudo-label", "--checkpoint", str(labeler), "--model-config", "tiny", "--images",
               str(tmp_path / "unlabelled"), "--out", str(pl), "--height", "32", "--width", "64",
               "--batch-size", "4", "--device", "cpu"]
    assert engine(pl_args) == 0
    manifest = pl / "manifest.jsonl"
    records = [json.loads(line) for line in manifest.read_text().splitlines()]
    assert len(records) == 6 and sorted(r["domain"] for r in records) == ["indoor"] * 3 + ["outdoor"] * 3
    first = records[0]
    depth = np.load(pl / first["depth"])
    assert depth.shape == (32, 64) and depth.dtype == np.float32
    assert np.all((depth > 0) & ((depth <= 100) | np.isinf(depth)))
    assert np.load(pl / first["mask"]).shape == (32, 64) and 0 <= first["score"] <= 1
    # restart after a kill that cut the manifest: finished images are kept, the rest redone
    lines = manifest.read_text().splitlines()
    manifest.write_text("\n".join(lines[:3]) + "\n" + lines[3][:20])
    assert engine(pl_args) == 0
    again = [json.loads(line) for line in manifest.read_text().splitlines()]
    assert sorted(r["id"] for r in again) == sorted(r["id"] for r in records)
    assert len((pl / "list.txt").read_text().splitlines()) == 6

    # (3) discriminator (GT pairs real, labeler pairs fake) + top-2 per domain
    sel = tmp_path / "select"
    sel_args = ["select", "--labeler", str(labeler), "--model-config", "tiny", "--labelled", LABELLED,
                "--pseudo", str(manifest), "--out", str(sel), "--top-k", "2", "--steps", "6", "--batch-size", "2",
                "--width", "8", "--device", "cpu"]
    assert engine(sel_args) == 0
    chosen = [json.loads(line) for line in (sel / "selected.jsonl").read_text().splitlines()]
    assert sorted(r["domain"] for r in chosen) == ["indoor", "indoor", "outdoor", "outdoor"]
    rows = [json.loads(line) for line in (sel / "scores.jsonl").read_text().splitlines()]
    scores = {row["id"]: row["score"] for row in rows}
    assert len(scores) == 6
    for domain in ("indoor", "outdoor"):
        kept = [r["score"] for r in chosen if r["domain"] == domain]
        dropped = [s for i, s in scores.items() if i not in {r["id"] for r in chosen}
                   and next(r for r in again if r["id"] == i)["domain"] == domain]
        assert min(kept) >= max(dropped)
    assert torch.load(sel / "discriminator.pt", weights_only=True)["step"] == 6
    before = (sel / "selected.txt").read_text()
    assert engine(sel_args) == 0  # restart: discriminator and scores are reused, same selection
    assert (sel / "selected.txt").read_text() == before and len(before.splitlines()) == 4

    # (4) the next model on labelled + selected pseudo-labels, initialized from the labeler
    student = tmp_path / "student"
    assert engine(["train-next", "--config", SMOKE, "--selected", str(sel / "selected.txt"),
                   f"run.out_dir={student}", *SMALL, "model.init=checkpoint", f"model.checkpoint={labeler}"]) == 0
    cfg = (student / "config.yaml").read_text()
    assert "selected.txt" in cfg
    assert json.loads((student / "final.json").read_text())["train_samples"] == 6 + 4  # labelled + selected
    assert [r["step"] for r in read_metrics(student / "metrics.jsonl")] == [1, 2, 3, 4]
    load_model(student / "export" / "model_final.pth", "tiny")
