"""Official-layout export, atomic checkpoint files, the optimizer's groups, schedule, EMA, sampler."""
from __future__ import annotations

import json
import math

import pytest
import torch

from dap_ros.model import build_model, load_model
from dap_ros.model.checkpoint import convert_official_keys
from training.checkpointing import (
    CheckpointManager,
    atomic_save,
    capture_rng_state,
    dinov3_backbone_state,
    export_official,
    restore_rng_state,
    to_official_state_dict,
)
from training.distributed import ResumableBatchSampler, ShardSampler
from training.optim import (
    ModelEMA,
    WarmupSchedule,
    build_optimizer,
    freeze_unused_parameters,
    lr_factor,
    unused_parameter_names,
)


def _tsv(reference_dir):
    rows = [line.split("\t") for line in (reference_dir / "dap_vitl_state_dict.tsv").read_text().splitlines()]
    return [(k, tuple(int(d) for d in s.split("x"))) for k, s, _ in rows]


def test_vitl_export_has_the_released_layout_exactly(reference_dir):
    with torch.device("meta"):
        model = build_model("vitl")
    official = to_official_state_dict(model)
    assert [(k, tuple(v.shape)) for k, v in official.items()] == _tsv(reference_dir)  # names, shapes, order
    assert set(convert_official_keys(official)) == set(model.state_dict())


def test_export_of_the_official_fixture_reproduces_the_file(reference_dir):
    path = reference_dir / "parity_tiny" / "model.pth"
    config = json.loads((reference_dir / "parity_tiny" / "config.json").read_text())
    original = torch.load(path, map_location="cpu", weights_only=True)
    exported = to_official_state_dict(load_model(path, config))
    assert list(exported) == list(original)
    assert all(torch.equal(exported[k], original[k]) for k in original)


def test_exported_file_loads_with_load_model_as_it_is(tmp_path):
    torch.manual_seed(0)
    model = build_model("tiny")
    for p in model.parameters():  # make every tensor distinct from a fresh init
        p.data.add_(torch.randn_like(p) * 0.01)
    path = export_official(model.state_dict(), tmp_path / "export" / "model.pth", model.config.to_dict())
    raw = torch.load(path, weights_only=True)
    assert any(k.startswith("core.pretrained.blocks.") for k in raw)  # the duplicated entries
    loaded = load_model(path, str(path.with_suffix(".json")))
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
    x = torch.randn(1, 3, 32, 64)
    model.eval()
    with torch.no_grad():
        a, b = model(x), loaded(x)
    assert torch.equal(a["pred_depth"], b["pred_depth"]) and torch.equal(a["pred_mask"], b["pred_mask"])


def test_dinov3_backbone_keys_map_onto_ours():
    model = build_model("tiny")
    official = to_official_state_dict(model)
    prefix = "core.pretrained.model."
    backbone_file = {k[len(prefix):]: v for k, v in official.items() if k.startswith(prefix)}
    mapped = dinov3_backbone_state(backbone_file)
    assert set(mapped) == {k for k in model.state_dict() if k.startswith("backbone.")}


def test_atomic_save_and_keep_last_and_best(tmp_path):
    manager = CheckpointManager(tmp_path / "ckpt", keep_last=2, best_mode="min")
    for step, metric in [(1, 0.5), (2, 0.3), (3, 0.4), (4, None)]:
        manager.save({"step": step}, step, "abs_rel", metric)
    names = sorted(p.name for p in manager.folder.iterdir())
    assert names == ["best.json", "best.pt", "step_00000003.pt", "step_00000004.pt"]  # no tmp files left
    assert torch.load(manager.folder / "best.pt")["step"] == 2
    assert manager.latest().name == "step_00000004.pt"
    assert json.loads((manager.folder / "best.json").read_text())["value"] == 0.3
    atomic_save({"a": 1}, tmp_path / "x.pt")
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_rng_state_round_trip_is_weights_only_loadable(tmp_path):
    import random

    import numpy as np

    state = capture_rng_state(torch.device("cpu"))
    atomic_save({"rng": state}, tmp_path / "rng.pt")
    expected = (random.random(), float(np.random.rand()), float(torch.rand(())))
    random.random(), np.random.rand(), torch.rand(())
    restore_rng_state(torch.load(tmp_path / "rng.pt", weights_only=True)["rng"], torch.device("cpu"))
    assert (random.random(), float(np.random.rand()), float(torch.rand(()))) == expected


def test_unused_parameters_are_exactly_those_without_gradients():
    model = build_model("tiny").train()
    frozen = set(freeze_unused_parameters(model))
    assert frozen == set(unused_parameter_names(model))
    assert "depth_head.fusions.3.skip_unit.conv1.weight" in frozen and "backbone.mask_token" in frozen
    out = model(torch.randn(1, 3, 32, 64))
    (out["pred_depth"].mean() + out["pred_mask"].mean()).backward()
    for name, p in model.named_parameters():
        assert (p.grad is not None) == (name not in frozen), name


def test_two_learning_rates_and_schedule():
    model = build_model("tiny")
    freeze_unused_parameters(model)
    cfg = {"name": "adamw", "lr_backbone": 5e-6, "lr_heads": 5e-5, "weight_decay": 0.05,
           "betas": [0.9, 0.999], "eps": 1e-8}
    opt = build_optimizer(model, cfg)
    groups = {g["name"]: g for g in opt.param_groups}
    assert set(groups) == {"backbone", "backbone_no_decay", "heads", "heads_no_decay"}
    # the official encoder group: the ViT and the adapter's LayerNorm (networks/dap.py core.pretrained)
    backbone_ids = {id(p) for p in model.backbone.parameters()} | {id(p) for p in model.adapter.parameters()}
    assert all(id(p) in backbone_ids for g in ("backbone", "backbone_no_decay") for p in groups[g]["params"])
    assert all(id(p) not in backbone_ids for g in ("heads", "heads_no_decay") for p in groups[g]["params"])
    assert groups["backbone"]["lr"] == 5e-6 and groups["heads"]["lr"] == 5e-5
    assert groups["heads_no_decay"]["weight_decay"] == 0.0 and groups["heads"]["weight_decay"] == 0.05
    schedule = WarmupSchedule(opt, {"name": "cosine", "warmup_steps": 4, "min_lr_ratio": 0.1}, total_steps=20)
    factors = []
    for _ in range(20):
        factors.append(schedule.factor())
        schedule.step()
    assert factors[:4] == pytest.approx([0.2, 0.4, 0.6, 0.8]) and factors[4] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(factors[4:], factors[5:]))
    assert lr_factor(20, 4, 20, "cosine", 0.1) == pytest.approx(0.1)
    assert lr_factor(10, 4, 20, "constant", 0.1) == 1.0
    resumed = WarmupSchedule(opt, {"name": "cosine", "warmup_steps": 4, "min_lr_ratio": 0.1}, total_steps=20)
    resumed.load_state_dict(schedule.state_dict())
    assert resumed.lrs() == schedule.lrs()


def test_ema_tracks_and_round_trips():
    model = torch.nn.Linear(3, 2)
    ema = ModelEMA(model, decay=0.5)
    with torch.no_grad():
        model.weight.add_(1.0)
    ema.update(model)  # decay_1 = min(0.5, 2/11)
    d = 2 / 11
    expected = (model.weight - 1.0) * d + model.weight * (1 - d)
    assert torch.allclose(ema.shadow["weight"], expected)
    other = ModelEMA(model, decay=0.9)
    other.load_state_dict(ema.state_dict())
    assert torch.equal(other.shadow["weight"], ema.shadow["weight"]) and other.updates == 1


def test_sampler_is_a_function_of_seed_and_epoch_and_resumes_mid_epoch():
    full = ResumableBatchSampler(22, batch_size=2, rank=0, world_size=2, seed=3)
    assert full.batches_per_epoch == 5  # 22 // 4, the remainder dropped
    full.set_epoch(1)
    order = list(full)
    again = ResumableBatchSampler(22, batch_size=2, rank=0, world_size=2, seed=3)
    again.set_epoch(1, skip_batches=3)
    assert list(again) == order[3:]
    other_rank = ResumableBatchSampler(22, batch_size=2, rank=1, world_size=2, seed=3)
    other_rank.set_epoch(1)
    mine = {i for b in order for i in b}
    theirs = {i for b in other_rank for i in b}
    assert not mine & theirs and len(mine | theirs) == 20
    full.set_epoch(2)
    assert list(full) != order
    shards = [list(ShardSampler(7, r, 3)) for r in range(3)]
    assert sorted(sum(shards, [])) == list(range(7))
    with pytest.raises(ValueError, match="fewer than one global batch"):
        ResumableBatchSampler(3, batch_size=2, world_size=2)
    assert math.isfinite(full.num_samples)


def test_logger_without_tensorboard_warns_and_resume_drops_later_records(tmp_path, monkeypatch):
    import sys

    from training.logging_utils import RunLogger, read_metrics

    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # import fails as if absent
    with pytest.warns(RuntimeWarning, match="tensorboard"):
        logger = RunLogger(tmp_path, enabled=True, tensorboard=True)
    for step in range(1, 6):
        logger.scalars(step, {"loss": float(step)})
    logger.close()
    with open(tmp_path / "metrics.jsonl", "a") as fh:
        fh.write('{"step": 6, "kind": "tr')  # a line cut by a kill
    RunLogger(tmp_path, enabled=True, tensorboard=False, resume_step=3).close()
    assert [r["step"] for r in read_metrics(tmp_path / "metrics.jsonl")] == [1, 2, 3]


def test_depth_panel_shape():
    from training.logging_utils import depth_panel

    panel = depth_panel(torch.randn(3, 8, 16), torch.rand(1, 8, 16), torch.rand(1, 8, 16), torch.rand(1, 8, 16),
                        torch.rand(1, 8, 16) > 0.3)
    assert panel.shape == (32, 16, 3) and panel.dtype.name == "uint8"
