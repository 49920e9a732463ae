"""Augmentations: yaw roll and flip move RGB, depth and masks together; jitter touches RGB only."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from dap_ros.geometry import ray_directions
from training.data import AugmentConfig, build_dataset
from training.data.augment import _hsv_to_rgb, _rgb_to_hsv, color_jitter, hflip, yaw_roll

SPEC = {"type": "synthetic", "num_samples": 4, "seed": 9, "height": 16, "width": 32, "indoor_fraction": 0.5}
KEYS = ("image", "depth", "valid", "beyond")


def _pair(augment):
    plain = build_dataset({**SPEC, "augment": False})
    aug = build_dataset({**SPEC, "augment": augment})
    return plain, aug


def test_yaw_roll_is_one_shift_for_all_tensors():
    plain, aug = _pair({"roll": True, "flip_p": 0.0, "jitter_p": 0.0})
    for i in range(3):
        a, b = plain[i], aug[i]
        shifts = [k for k in range(32) if torch.equal(torch.roll(a["depth"], k, -1), b["depth"])]
        assert shifts, "depth is not a circular shift"
        k = shifts[0]
        for key in KEYS:
            assert torch.equal(torch.roll(a[key], k, -1), b[key]), key


def test_flip_mirrors_all_tensors_and_azimuth():
    plain, aug = _pair({"roll": False, "flip_p": 1.0, "jitter_p": 0.0})
    a, b = plain[0], aug[0]
    for key in KEYS:
        assert torch.equal(torch.flip(a[key], [-1]), b[key]), key
    # with pixel-centre sampling, column W-1-u looks at azimuth -phi(u): the mirrored world (y -> -y)
    rays = ray_directions(16, 32)
    np.testing.assert_allclose(rays[:, ::-1], rays * np.array([1, -1, 1], np.float32), atol=1e-6)


def test_jitter_changes_rgb_only():
    plain, aug = _pair({"roll": False, "flip_p": 0.0, "jitter_p": 1.0})
    a, b = plain[1], aug[1]
    assert not torch.equal(a["image"], b["image"])
    for key in ("depth", "valid", "beyond"):
        assert torch.equal(a[key], b[key])


def test_jitter_identity_and_hsv_roundtrip():
    x = torch.rand(3, 8, 16)
    assert torch.allclose(color_jitter(x, 1.0, 1.0, 1.0, 0.0, [0, 1, 2, 3]), x)
    assert torch.allclose(_hsv_to_rgb(_rgb_to_hsv(x)), x, atol=1e-5)
    y = color_jitter(x, 1.0, 1.0, 1.0, 1.0 / 3.0, [3])  # a third of a turn: R -> G -> B
    red = torch.zeros(3, 1, 1)
    red[0] = 1.0
    green = torch.tensor([0.0, 1.0, 0.0])
    assert torch.allclose(color_jitter(red, 1, 1, 1, 1.0 / 3.0, [3]).flatten(), green, atol=1e-6)
    assert y.shape == x.shape and y.min() >= 0 and y.max() <= 1


def test_roll_and_flip_helpers():
    x = torch.arange(6.0).view(1, 1, 6)
    assert yaw_roll(x, 2).flatten().tolist() == [4, 5, 0, 1, 2, 3]
    assert hflip(x).flatten().tolist() == [5, 4, 3, 2, 1, 0]


def test_augmentation_is_a_function_of_seed_epoch_index():
    _, aug = _pair(True)
    first = aug[2]
    again = aug[2]
    for key in KEYS:
        assert torch.equal(first[key], again[key])
    aug.set_epoch(1)
    other = aug[2]
    assert any(not torch.equal(first[k], other[k]) for k in ("image", "depth"))


def test_augment_config_spec():
    assert AugmentConfig.from_spec(False) is None and AugmentConfig.from_spec(True) == AugmentConfig()
    assert AugmentConfig.from_spec({"flip_p": 0.0}).flip_p == 0.0
    with pytest.raises(ValueError):
        AugmentConfig.from_spec({"mirror": 1})
