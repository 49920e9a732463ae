"""Training config: YAML + dotted overrides, validated with messages that name the key."""
from __future__ import annotations

from pathlib import Path

import pytest

from training.config import TrainConfigError, load_config

CONFIGS = Path(__file__).resolve().parents[2] / "training" / "configs"


@pytest.mark.parametrize("name", sorted(p.name for p in CONFIGS.glob("*.yaml")))
def test_shipped_configs_validate(name):
    cfg = load_config(CONFIGS / name)
    assert cfg.train.max_steps >= 1
    assert cfg.optim.lr_backbone <= cfg.optim.lr_heads


def test_overrides_are_parsed_as_yaml_and_reach_nested_keys():
    cfg = load_config(
        CONFIGS / "smoke.yaml",
        ["optim.lr_heads=2e-4", "train.max_steps=7", "data.train.num_samples=12", "train.ema.enabled=true",
         "model.gradient_checkpointing=true", "data.train.new_key=[1, 2]", "loss.weights={silog: 1.0}"],
    )
    assert cfg.optim.lr_heads == pytest.approx(2e-4) and isinstance(cfg.optim.lr_heads, float)
    assert cfg.train.max_steps == 7
    assert cfg.data.train["num_samples"] == 12 and cfg.data.train["new_key"] == [1, 2]
    assert cfg.train.ema.enabled is True and cfg.model.gradient_checkpointing is True
    assert cfg.loss.weights == {"silog": 1.0}
    assert cfg.optim.lr_backbone == pytest.approx(1e-3)  # from the file, untouched


def test_base_chain_merges():
    cfg = load_config(CONFIGS / "vitl_from_dinov3.yaml")
    assert cfg.model.init == "dinov3" and cfg.model.config == "vitl"
    assert cfg.optim.lr_backbone == pytest.approx(5e-6) and cfg.optim.lr_heads == pytest.approx(5e-5)
    assert cfg.schedule.warmup_steps == 2000


@pytest.mark.parametrize(
    "override, fragment",
    [
        ("optim.lr_haeds=1e-4", "did you mean 'optim.lr_heads'"),
        ("trian.max_steps=3", "unknown config key 'trian'"),
        ("train.max_steps=ten", "'train.max_steps' must be an integer"),
        ("train.max_steps=0", "'train.max_steps' must be >= 1"),
        ("train.amp=fp8", "'train.amp' must be one of none, bf16, fp16"),
        ("optim.name=sgd", "'optim.name' must be one of adam, adamw"),
        ("model.init=dap", "'model.init' is 'dap' but 'model.checkpoint' is not set"),
        ("optim.betas=[0.9]", "'optim.betas' must be two numbers"),
        ("train.ema.enabled=maybe", "'train.ema.enabled' must be true or false"),
        ("data.train={num_samples: 3}", "must be a mapping with a 'type' key"),
        ("loss.distortion=maybe", "'loss.distortion' must be true or false"),
        ("loss.silog_lambda=1.5", "'loss.silog_lambda' must be a number in [0, 1]"),
        ("schedule.total_steps=0", "'schedule.total_steps' must be a positive integer or null"),
        ("max_steps", "must look like key.path=value"),
        ("optim.lr_heads=[", "not valid YAML"),
    ],
)
def test_bad_overrides_name_the_key(override, fragment):
    with pytest.raises(TrainConfigError) as info:
        load_config(CONFIGS / "smoke.yaml", [override])
    assert fragment in str(info.value)


def test_bad_files(tmp_path):
    with pytest.raises(TrainConfigError, match="config file not found"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("optim:\n  lr_heads: [1, 2\n")
    with pytest.raises(TrainConfigError, match="not valid YAML"):
        load_config(bad)
    typo = tmp_path / "typo.yaml"
    typo.write_text("optim:\n  learning_rate: 1.0\n")
    with pytest.raises(TrainConfigError, match="unknown config key 'optim.learning_rate'"):
        load_config(typo)
    loop = tmp_path / "loop.yaml"
    loop.write_text("base: loop.yaml\n")
    with pytest.raises(TrainConfigError, match="loops"):
        load_config(loop)


def test_cli_reports_config_errors_in_one_line(capsys):
    from training.train import main

    assert main(["--config", str(CONFIGS / "smoke.yaml"), "optim.lr_haeds=1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: unknown config key 'optim.lr_haeds'")
