"""The DAP network against the official implementation's fixtures, and strict checkpoint loading."""
from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from dap_ros.config import ModelConfig, resolve_config
from dap_ros.errors import CheckpointError, ConfigError
from dap_ros.model import build_model, count_parameters, load_model, read_state_dict

TOL = 1e-4


@pytest.fixture(scope="module")
def parity(reference_dir):
    folder = reference_dir / "parity_tiny"
    return folder, load_file(str(folder / "io.safetensors"))


@pytest.fixture(scope="module")
def official_state(parity):
    folder, _ = parity
    return torch.load(folder / "model.pth", map_location="cpu", weights_only=True)


def _max_diffs(model, io):
    with torch.no_grad():
        feats = model.extract_features(io["input"])
        out = model(io["input"])
    diffs = {f"feature_{i}": (f - io[f"feature_{i}"]).abs().max().item() for i, f in enumerate(feats)}
    diffs.update({k: (out[k] - io[k]).abs().max().item() for k in ("pred_depth", "pred_mask")})
    return diffs


def test_parity_with_official_implementation(parity):
    folder, io = parity
    model = load_model(folder / "model.pth", folder / "config.json")
    assert not model.training
    diffs = _max_diffs(model, io)
    assert max(diffs.values()) < TOL, diffs
    with torch.no_grad():
        out = model(io["input"])
    assert out["pred_depth"].shape == io["input"].shape[:1] + (1,) + io["input"].shape[2:]


def test_parity_fixture_is_sensitive_to_the_adapter_quirk(parity):
    """Guard that the fixture would catch a plain reshape instead of the drop-and-resample."""
    folder, io = parity
    model = load_model(folder / "model.pth", folder / "config.json")
    adapter = model.adapter

    def plain(tokens, h, w):
        tokens = adapter.norm(tokens)
        return tokens.transpose(1, 2).reshape(tokens.shape[0], tokens.shape[2], h, w)

    adapter.forward = plain
    assert max(_max_diffs(model, io).values()) > 100 * TOL


def test_module_prefix_and_wrapped_state_dicts(parity, official_state, tmp_path):
    folder, io = parity
    prefixed = tmp_path / "dp.pth"
    torch.save({"state_dict": {f"module.{k}": v for k, v in official_state.items()}}, prefixed)
    model = load_model(prefixed, folder / "config.json")
    assert max(_max_diffs(model, io).values()) < TOL


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_copies_load(parity, official_state, tmp_path, dtype):
    folder, io = parity
    path = tmp_path / "half.pth"
    torch.save({k: v.to(dtype) if v.is_floating_point() else v for k, v in official_state.items()}, path)
    model = load_model(path, folder / "config.json")
    assert next(model.parameters()).dtype == torch.float32
    diffs = _max_diffs(model, io)
    assert diffs["pred_depth"] < 5e-2  # rounded weights: close, not identical


def test_rope_periods_and_bias_mask_come_from_the_checkpoint(parity, official_state, tmp_path):
    folder, io = parity
    state = dict(official_state)
    periods_key = "core.pretrained.model.rope_embed.periods"
    state[periods_key] = state[periods_key] * 1.01
    mask_key = "core.pretrained.model.blocks.0.attn.qkv.bias_mask"
    state[mask_key] = torch.ones_like(state[mask_key])
    path = tmp_path / "edited.pth"
    torch.save(state, path)
    model = load_model(path, folder / "config.json")
    assert torch.equal(model.backbone.rope_embed.periods, state[periods_key])
    assert torch.equal(model.backbone.blocks[0].attn.qkv.bias_mask, state[mask_key])
    assert max(_max_diffs(model, io).values()) > TOL


def test_missing_unexpected_and_misshaped_tensors_are_named(parity, official_state, tmp_path):
    folder, _ = parity
    state = dict(official_state)
    del state["core.depth_head.scratch.output_conv1.bias"]
    state["core.extra.weight"] = torch.zeros(3)
    state["core.mask_head.projects.0.bias"] = torch.zeros(7)
    path = tmp_path / "broken.pth"
    torch.save(state, path)
    with pytest.raises(CheckpointError) as info:
        load_model(path, folder / "config.json")
    message = str(info.value)
    assert "missing: depth_head.output_conv1.bias" in message
    assert "unexpected: core.extra.weight" in message
    assert "mask_head.projections.0.bias (file (7,), model (24,))" in message


def test_checkpoint_for_another_architecture(parity):
    folder, _ = parity
    with pytest.raises(CheckpointError, match=r"embed_dim=96.*depth=4"):
        load_model(folder / "model.pth", "vitl")


@pytest.mark.parametrize(
    "content, match",
    [
        (b"", "empty"),
        (b"this is not a checkpoint\n", "cannot be read"),
        (None, "truncated"),
    ],
)
def test_bad_files_give_clear_errors(parity, tmp_path, content, match):
    folder, _ = parity
    path = tmp_path / "bad.pth"
    if content is None:
        data = (folder / "model.pth").read_bytes()
        content = data[: len(data) // 2]
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match=match):
        load_model(path, folder / "config.json")


def test_missing_checkpoint_points_to_the_weights(tmp_path):
    with pytest.raises(CheckpointError, match="DAP-weights"):
        read_state_dict(tmp_path / "model.pth")


def test_checkpoint_with_non_tensors_is_refused(tmp_path):
    path = tmp_path / "pickle.pth"
    torch.save({"config": {"lr": 1}, "epoch": 3}, path)
    with pytest.raises(CheckpointError):
        read_state_dict(path)


def test_checkpoint_with_python_objects_is_refused_without_suggesting_to_unpickle_them(tmp_path):
    import argparse

    path = tmp_path / "objects.pth"
    torch.save({"args": argparse.Namespace(lr=1), "model": {"w": torch.zeros(1)}}, path)
    with pytest.raises(CheckpointError, match="can run arbitrary code") as info:
        read_state_dict(path)
    assert "weights_only=False" not in str(info.value) and "\n" not in str(info.value)


def test_safetensors_checkpoint(parity, official_state, tmp_path):
    from safetensors.torch import save_file

    folder, io = parity
    path = tmp_path / "model.safetensors"
    unique = {k: v.contiguous() for k, v in official_state.items() if not k.startswith("core.pretrained.blocks.")}
    save_file(unique, str(path))
    assert max(_max_diffs(load_model(path, folder / "config.json"), io).values()) < TOL


@pytest.mark.parametrize("dtype", [torch.int32, torch.bool, torch.complex64])
def test_safetensors_tensor_of_a_non_float_dtype_is_refused(parity, official_state, tmp_path, dtype):
    from safetensors.torch import save_file

    folder, _ = parity
    key = "core.depth_head.scratch.output_conv1.bias"  # right shape, wrong dtype: once cast silently
    state = {k: v.contiguous() for k, v in official_state.items() if not k.startswith("core.pretrained.blocks.")}
    state[key] = state[key].to(dtype)
    path = tmp_path / "model.safetensors"
    save_file(state, str(path))
    with pytest.raises(CheckpointError, match=rf"not floating point.*depth_head\.output_conv1\.bias \({dtype}\)"):
        load_model(path, folder / "config.json")


def test_vitl_preset_matches_the_released_layout(reference_dir, tmp_path):
    """A random checkpoint written in the released layout (incl. the duplicated block entries)
    loads with zero missing or unexpected tensors; parameter counts match the released model (docs/conventions.md)."""
    rows = [line.split("\t") for line in (reference_dir / "dap_vitl_state_dict.tsv").read_text().splitlines()]
    assert len(rows) == 858
    model = build_model("vitl")
    backbone = count_parameters(model.backbone)
    head = count_parameters(model.depth_head)
    assert round(count_parameters(model) / 1e6, 1) == 365.1
    assert round(backbone / 1e6, 1) == 303.2 and round(head / 1e6, 1) == 30.9
    generator = torch.Generator().manual_seed(0)
    state, shared = {}, {}
    for key, shape, _dtype in rows:
        dims = tuple(int(d) for d in shape.split("x"))
        twin = key.replace("core.pretrained.blocks.", "core.pretrained.model.blocks.")
        if twin in shared:  # the official module saves the same tensor under both names
            state[key] = shared[twin]
            continue
        state[key] = shared[key] = (torch.randn(dims, generator=generator) * 0.02).to(torch.float16)
    path = tmp_path / "vitl_fp16.pth"
    torch.save(state, path)
    del state, shared
    loaded = load_model(path, "vitl")
    assert torch.equal(
        loaded.depth_head.fusions[3].skip_unit.conv1.weight.half(),
        torch.load(path, weights_only=True, mmap=True)["core.depth_head.scratch.refinenet4.resConfUnit1.conv1.weight"],
    )


def test_random_model_and_config_validation(tmp_path):
    model = load_model(None, "tiny")
    assert not model.training
    out = model(torch.zeros(1, 3, 32, 64))
    assert out["pred_depth"].shape == (1, 1, 32, 64) and out["pred_mask"].shape == (1, 1, 32, 64)
    with pytest.raises(ValueError, match="multiples of 16"):
        model(torch.zeros(1, 3, 40, 64))
    with pytest.raises(ConfigError, match="unknown model config"):
        resolve_config("vitx")
    bad = tmp_path / "bad.json"
    data = resolve_config("tiny").to_dict()
    data["intermediate_layers"] = [0, 1, 2, 9]
    bad.write_text(json.dumps(data))
    with pytest.raises(ConfigError, match="intermediate_layers"):
        resolve_config(bad)
    del data["depth"]
    bad.write_text(json.dumps(data))
    with pytest.raises(ConfigError, match="missing keys \\['depth'\\]"):
        resolve_config(bad)
    assert isinstance(resolve_config(resolve_config("vitl").to_dict()), ModelConfig)


def test_perfect_square_token_count_branch():
    """h*w-1 = 49 = 7*7 at 80x160: the official adapter reshapes to 7x7 and resizes."""
    model = load_model(None, "tiny")
    out = model(torch.randn(1, 3, 80, 160))
    assert out["pred_depth"].shape == (1, 1, 80, 160)
    assert torch.isfinite(out["pred_depth"]).all()


def test_network_compiles_without_graph_breaks():
    model = load_model(None, "tiny")
    x = torch.randn(1, 3, 32, 64)
    compiled = torch.compile(model, fullgraph=True, backend="eager")
    with torch.no_grad():
        expected = model(x)["pred_depth"]
        assert torch.allclose(compiled(x)["pred_depth"], expected, atol=1e-6)
