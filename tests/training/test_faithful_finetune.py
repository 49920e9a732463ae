"""Fine-tuning faithful to the official code (issue 14): DINOv3's training-mode RoPE coordinate
rescaling, the adapter LayerNorm in the encoder LR group, the official loaders' hue jitter and
bicubic resize, and SILog lambda 0.5 in the fine-tuning config."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from dap_ros.model import build_model
from dap_ros.model.layers import RopeEmbedding
from training.config import DEFAULTS, TrainConfigError, load_config
from training.data.augment import AugmentConfig
from training.data.datasets import PanoramaDataset, build_dataset, resize_rgb_cubic
from training.optim import build_optimizer, freeze_unused_parameters, param_groups

REPO = Path(__file__).resolve().parents[2]
CONFIGS = REPO / "training" / "configs"
FINETUNE = CONFIGS / "vitl_finetune.yaml"


# ------------------------------------------------------------------------------------------------
# RoPE coordinate rescaling
# ------------------------------------------------------------------------------------------------
def _official_rope(periods: torch.Tensor, H: int, W: int, rescale: float | None, training: bool):
    """facebookresearch/dinov3 dinov3/layers/rope_position_encoding.py forward (normalize_coords
    'separate', no shift/jitter, fp32), global RNG as there."""
    coords_h = torch.arange(0.5, H, dtype=torch.float32) / H
    coords_w = torch.arange(0.5, W, dtype=torch.float32) / W
    coords = torch.stack(torch.meshgrid(coords_h, coords_w, indexing="ij"), dim=-1).flatten(0, 1)
    coords = 2.0 * coords - 1.0
    if training and rescale is not None:
        rescale_max = np.log(rescale)
        rescale_hw = torch.empty(1, dtype=torch.float32).uniform_(-rescale_max, rescale_max).exp()
        coords *= rescale_hw
    angles = 2 * math.pi * coords[:, :, None] / periods[None, None, :]
    angles = angles.flatten(1, 2).tile(2)
    return torch.sin(angles), torch.cos(angles)


def _tokens(model, x):
    return model.backbone.intermediate_patch_tokens(x, tuple(model.config.intermediate_layers))


@pytest.fixture(scope="module")
def tiny():
    """The tiny network with attention that matters: at initialization LayerScale (1e-5) and small
    q/k weights make the blocks nearly position-blind, so positional changes would not show."""
    torch.manual_seed(0)
    model = build_model("tiny")
    with torch.no_grad():
        for name, param in model.backbone.named_parameters():
            if name.endswith("gamma"):
                param.fill_(1.0)
            elif name.endswith("attn.qkv.weight"):
                param.mul_(25.0)
    return model


def test_rope_rescale_matches_the_official_draw_and_formula():
    rope = RopeEmbedding(16)
    rope.set_rescale_coords(2.0)
    rope.train()
    for seed in (0, 1, 123):
        torch.manual_seed(seed)
        ref_sin, ref_cos = _official_rope(rope.periods, 3, 5, 2.0, training=True)
        rope.seed_jitter(seed)  # same stream as the official global-RNG draw with that seed
        sin, cos = rope(3, 5, n_prefix=5)
        assert torch.equal(sin[5:], ref_sin) and torch.equal(cos[5:], ref_cos)
        # prefix tokens (CLS + storage) stay unrotated in training mode too
        assert torch.equal(sin[:5], torch.zeros(5, 16)) and torch.equal(cos[:5], torch.ones(5, 16))


def test_rope_scale_is_log_uniform_in_the_range_and_shared_by_both_axes():
    rope = RopeEmbedding(16)
    rope.set_rescale_coords(2.0, seed=7)
    logs = torch.cat([rope.draw_scale() for _ in range(4000)]).log() / math.log(2.0)
    assert logs.min() >= -1.0 and logs.max() <= 1.0
    assert abs(float(logs.mean())) < 0.05  # uniform in log space on [-1, 1] (in units of log 2)
    assert float((logs < -0.5).float().mean()) == pytest.approx(0.25, abs=0.03)
    assert float((logs > 0.5).float().mean()) == pytest.approx(0.25, abs=0.03)
    # one scalar per forward multiplies both axes: the table equals compute() with that scale
    rope.seed_jitter(3)
    scale = rope.draw_scale()
    rope.seed_jitter(3)
    rope.train()
    sin, cos = rope(4, 8, 1)
    ref_sin, ref_cos = rope.compute(4, 8, 1, scale)
    assert torch.equal(sin, ref_sin) and torch.equal(cos, ref_cos)


def test_rope_eval_is_unchanged_and_cached_with_jitter_on():
    rope = RopeEmbedding(16)
    rope.eval()
    before = rope(4, 8, 5)
    plain = rope.compute(4, 8, 5)
    rope.set_rescale_coords(2.0, seed=1)
    after = rope(4, 8, 5)
    assert after[0] is before[0] and after[1] is before[1]  # the same cached tables
    assert torch.equal(after[0], plain[0]) and torch.equal(after[1], plain[1])


def test_rope_rescale_validation_and_off_switch():
    rope = RopeEmbedding(16)
    assert rope.rescale_coords is None
    with pytest.raises(ValueError, match="rescale_coords"):
        rope.set_rescale_coords(0.5)
    with pytest.raises(RuntimeError):
        rope.draw_scale()
    rope.set_rescale_coords(2.0)
    rope.set_rescale_coords(None)
    rope.train()
    assert torch.equal(rope(4, 8, 1)[0], rope.compute(4, 8, 1)[0])


def test_train_mode_backbone_with_jitter_off_equals_eval(tiny):
    x = torch.randn(1, 3, 32, 64, generator=torch.Generator().manual_seed(0))
    tiny.backbone.rope_embed.set_rescale_coords(None)
    with torch.no_grad():
        tiny.eval()
        ev = _tokens(tiny, x)
        tiny.train()
        tr = _tokens(tiny, x)
    tiny.eval()
    assert all(torch.equal(a, b) for a, b in zip(ev, tr))


def test_train_mode_jitter_varies_with_the_seed_and_repeats_with_the_same_seed(tiny):
    x = torch.randn(1, 3, 32, 64, generator=torch.Generator().manual_seed(0))
    rope = tiny.backbone.rope_embed
    with torch.no_grad():
        tiny.eval()
        ev = _tokens(tiny, x)
        rope.set_rescale_coords(2.0, seed=1)
        tiny.train()
        a1 = _tokens(tiny, x)
        a1_next = _tokens(tiny, x)  # a new scale on every forward
        rope.seed_jitter(1)
        a2 = _tokens(tiny, x)
        rope.seed_jitter(2)
        b = _tokens(tiny, x)
        tiny.eval()
        ev_after = _tokens(tiny, x)
    rope.set_rescale_coords(None)
    assert all(torch.equal(p, q) for p, q in zip(a1, a2))
    assert not torch.allclose(a1[-1], b[-1], atol=1e-5)
    assert not torch.allclose(a1[-1], a1_next[-1], atol=1e-5)
    assert not torch.allclose(a1[-1], ev[-1], atol=1e-5)
    assert all(torch.equal(p, q) for p, q in zip(ev, ev_after))  # eval unaffected


def test_rope_jitter_seed_is_a_function_of_seed_rank_and_step():
    from training.train import rope_jitter_seed

    assert rope_jitter_seed(0, 0, 5) == rope_jitter_seed(0, 0, 5)
    assert len({rope_jitter_seed(s, r, t) for s in (0, 1) for r in (0, 1) for t in (0, 1)}) == 8


def test_rope_rescale_config_key():
    assert DEFAULTS["model"]["rope_rescale_coords"] is None  # off for the synthetic / tiny recipes
    assert load_config(CONFIGS / "smoke.yaml").model.rope_rescale_coords is None
    cfg = load_config(FINETUNE)
    assert cfg.model.rope_rescale_coords == 2.0  # official dinov3_vitl16: pos_embed_rope_rescale_coords=2
    assert load_config(CONFIGS / "vitl_from_dinov3.yaml").model.rope_rescale_coords == 2.0
    assert load_config(FINETUNE, ["model.rope_rescale_coords=null"]).model.rope_rescale_coords is None
    assert load_config(FINETUNE, ["model.rope_rescale_coords=3"]).model.rope_rescale_coords == 3.0
    for bad in ("0.5", "true", "two"):
        with pytest.raises(TrainConfigError, match="rope_rescale_coords"):
            load_config(FINETUNE, [f"model.rope_rescale_coords={bad}"])


def test_training_run_with_rope_jitter(tmp_path):
    """Two steps of the smoke recipe with the jitter on: the loop seeds and uses it."""
    from training.train import main

    out = tmp_path / "jitter"
    assert main(["--config", str(CONFIGS / "smoke.yaml"), f"run.out_dir={out}", "data.train.height=32",
                 "data.train.width=64", "data.train.num_samples=4", "data.batch_size=2", "data.val=null",
                 "train.max_steps=2", "train.threads=1", "logging.progress=false", "logging.tensorboard=false",
                 "model.rope_rescale_coords=2.0", "run.resume=never"]) == 0
    assert (out / "export" / "model_final.pth").is_file()


# ------------------------------------------------------------------------------------------------
# LR groups: the official encoder group is core.pretrained = DINOv3 ViT + the adapter's LayerNorm
# ------------------------------------------------------------------------------------------------
def test_each_parameter_lands_in_the_official_lr_group():
    from training.checkpointing import to_official_state_dict

    model = build_model("tiny")
    freeze_unused_parameters(model)
    groups = param_groups(model, lr_backbone=1e-6, lr_heads=1e-5, weight_decay=0.01)
    where = {}
    for g in groups:
        for p in g["params"]:
            assert id(p) not in where, "a parameter in two groups"
            where[id(p)] = g
    names = dict(model.named_parameters())
    trainable = {n for n, p in names.items() if p.requires_grad}
    assert {id(names[n]) for n in trainable} == set(where)
    for name in trainable:
        group = where[id(names[name])]
        official = list(to_official_state_dict({name: names[name].detach()}))
        encoder = all(k.startswith("core.pretrained.") for k in official)  # get_encoder_decoder_params
        assert group["name"].startswith("backbone" if encoder else "heads"), (name, official, group["name"])
        assert group["lr"] == (1e-6 if encoder else 1e-5), name
    for suffix in ("weight", "bias"):
        group = where[id(names[f"adapter.norm.{suffix}"])]
        assert group["name"] == "backbone_no_decay" and group["lr"] == 1e-6
    assert where[id(names["depth_head.output_conv3.weight"])]["name"] == "heads"
    assert where[id(names["mask_head.output_conv3.bias"])]["name"] == "heads_no_decay"
    opt = build_optimizer(model, {"name": "adam", "lr_backbone": 1e-6, "lr_heads": 1e-5, "weight_decay": 0.0,
                                  "betas": [0.9, 0.999], "eps": 1e-8})
    assert sum(len(g["params"]) for g in opt.param_groups) == len(trainable)


# ------------------------------------------------------------------------------------------------
# Augmentation and resize defaults of the fine-tuning config
# ------------------------------------------------------------------------------------------------
def test_official_augmentation_preset_and_finetune_defaults():
    off = AugmentConfig.from_spec("official")
    assert off == AugmentConfig.official()
    assert (off.hue, off.brightness, off.contrast, off.saturation, off.jitter_p, off.flip_p, off.roll) == (
        0.1, 0.2, 0.2, 0.2, 0.5, 0.5, True)
    assert AugmentConfig.from_spec(True).hue == 0.05  # the synthetic recipes keep their own
    with pytest.raises(ValueError, match="official"):
        AugmentConfig.from_spec("paper")
    cfg = load_config(FINETUNE)
    assert cfg.data.train.augment == "official" and cfg.data.train.resize == "cubic"
    assert cfg.data.val.augment is False and cfg.data.val.resize == "cubic"
    assert load_config(CONFIGS / "smoke.yaml").data.train.augment is True


def _cv2_inter_cubic(img: np.ndarray, height: int, width: int) -> np.ndarray:
    """OpenCV INTER_CUBIC in float: Keys a = -0.75, fx = (x + 0.5) * scale - 0.5, clamped taps."""
    def weights(t):
        a = -0.75
        x = np.stack([1 + t, t, 1 - t, 2 - t], -1)
        w = np.where(x <= 1, ((a + 2) * x - (a + 3)) * x * x + 1, ((a * x - 5 * a) * x + 8 * a) * x - 4 * a)
        return w

    def axis(src: int, dst: int):
        f = (np.arange(dst) + 0.5) * src / dst - 0.5
        i = np.floor(f).astype(int)
        idx = np.clip(i[:, None] + np.arange(-1, 3)[None], 0, src - 1)
        return idx, weights(f - i)

    x = img.astype(np.float64)
    ri, rw = axis(x.shape[0], height)
    x = (x[ri] * rw[:, :, None, None]).sum(1)
    ci, cw = axis(x.shape[1], width)
    x = (x[:, ci] * cw[None, :, :, None]).sum(2)
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)


@pytest.mark.parametrize("size", [(24, 48), (40, 80), (16, 32)])
def test_cubic_resize_matches_opencv_inter_cubic(size):
    rgb = np.random.default_rng(0).integers(0, 256, (32, 64, 3), dtype=np.uint8)
    out = resize_rgb_cubic(rgb, *size)
    assert out.dtype == np.uint8 and out.shape == (*size, 3)
    diff = np.abs(out.astype(int) - _cv2_inter_cubic(rgb, *size).astype(int))
    assert diff.max() <= 1
    assert resize_rgb_cubic(rgb, 32, 64) is rgb


class _OneImage(PanoramaDataset):
    def __len__(self) -> int:
        return 1

    def load(self, index: int) -> dict:
        rgb = np.random.default_rng(1).integers(0, 256, (32, 64, 3), dtype=np.uint8)
        return {"rgb": rgb, "range_m": np.full((32, 64), 5.0, np.float32)}


def test_dataset_resize_choice():
    cubic = _OneImage(16, 32, resize="cubic")[0]["image"]
    bilinear = _OneImage(16, 32)[0]["image"]
    assert cubic.shape == bilinear.shape == (3, 16, 32)
    assert not torch.allclose(cubic, bilinear)
    with pytest.raises(ValueError, match="resize"):
        _OneImage(16, 32, resize="lanczos")
    ds = build_dataset({"type": "synthetic", "num_samples": 1, "height": 16, "width": 32, "resize": "cubic"})
    assert ds.resize == "cubic"


# ------------------------------------------------------------------------------------------------
# SILog lambda
# ------------------------------------------------------------------------------------------------
def test_silog_lambda_official_in_the_finetune_config():
    from training.losses.silog import LAMBDA
    from training.train import _build_loss

    assert DEFAULTS["loss"]["silog_lambda"] == LAMBDA == 0.85
    cfg = load_config(FINETUNE)
    assert cfg.loss.silog_lambda == 0.5  # official SiLogLoss(lambd=0.5)
    assert _build_loss(cfg).silog_lambda == 0.5
    assert load_config(CONFIGS / "smoke.yaml").loss.silog_lambda == 0.85
