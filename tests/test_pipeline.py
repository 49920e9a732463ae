"""Pre-processing, post-processing semantics and the DepthPredictor."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from dap_ros.errors import ConfigError, ImageError
from dap_ros.pipeline import DepthPredictor, Preprocessor, postprocess
from dap_ros.settings import IMAGENET_MEAN, IMAGENET_STD


@pytest.fixture(scope="module")
def predictor():
    return DepthPredictor.create(None, "tiny", input_size=(64, 128), allow_random=True)


def _outputs(depth, mask):
    as_map = lambda a: torch.as_tensor(a, dtype=torch.float32)[None, None]  # noqa: E731
    return as_map(depth), as_map(mask)


def test_units_mask_rule_and_rep117_values():
    depth = np.full((4, 8), 0.05)  # 5 m
    depth[0, 0] = np.nan
    mask = np.zeros((4, 8))
    mask[1, :] = 0.9  # beyond range / sky
    mask[2, 0] = 0.45  # in range with the official 0.5 rule, out with 0.6
    range_m, in_range = postprocess(*_outputs(depth, mask), (4, 8))
    r = range_m.numpy()
    assert np.isnan(r[0, 0]) and not in_range[0, 0]
    assert np.isposinf(r[1]).all() and not in_range[1].any()
    assert r[2, 0] == pytest.approx(5.0) and in_range[2, 0]
    assert np.allclose(r[3], 5.0)
    range_m, in_range = postprocess(*_outputs(depth, mask), (4, 8), mask_threshold=0.6)
    assert np.isposinf(range_m.numpy()[2, 0]) and not in_range[2, 0]


def test_max_range_turns_far_pixels_into_out_of_range():
    depth = np.array([[0.02, 0.5, 0.9, 0.1]])
    range_m, in_range = postprocess(*_outputs(depth, np.zeros_like(depth)), (1, 4), max_range=20.0)
    range_m = range_m.numpy()
    assert np.allclose(range_m[0, [0, 3]], [2.0, 10.0])
    assert np.isposinf(range_m[0, [1, 2]]).all()
    assert in_range.numpy().tolist() == [[True, False, False, True]]


def test_upsampling_never_blends_across_the_range_boundary():
    depth = np.full((8, 16), 0.03)  # 3 m everywhere the mask says "in range"
    depth[:, 8:] = 0.9  # garbage depth under the sky region must not leak into neighbours
    mask = np.zeros((8, 16))
    mask[:, 8:] = 1.0
    range_m, in_range = postprocess(*_outputs(depth, mask), (32, 64))
    finite = range_m[torch.isfinite(range_m)]
    assert finite.numel() > 0 and torch.allclose(finite, torch.tensor(3.0))
    assert in_range[:, :30].all() and not in_range[:, 34:].any()
    assert torch.equal(in_range, torch.isfinite(range_m))


def test_upsampling_in_smooth_regions_is_plain_bilinear():
    depth = torch.linspace(0.01, 0.05, 16).repeat(8, 1).numpy()
    range_m, _ = postprocess(*_outputs(depth, np.zeros_like(depth)), (16, 32))
    plain = torch.nn.functional.interpolate(
        torch.as_tensor(depth)[None, None] * 100, size=(16, 32), mode="bilinear", align_corners=False
    )[0, 0]
    assert torch.allclose(range_m, plain.float(), atol=1e-5)


@pytest.mark.parametrize("normalization", ["imagenet", "none"])
def test_preprocessor_normalization(normalization):
    pre = Preprocessor((16, 32), normalization, torch.device("cpu"), torch.float32)
    rgb = np.zeros((32, 64, 3), dtype=np.uint8)
    rgb[..., 0], rgb[..., 1], rgb[..., 2] = 255, 128, 0
    x = pre(rgb)
    assert x.shape == (1, 3, 16, 32)
    expected = np.array([1.0, 128 / 255, 0.0])
    if normalization == "imagenet":
        expected = (expected - np.array(IMAGENET_MEAN)) / np.array(IMAGENET_STD)
    assert np.allclose(x[0, :, 5, 5].numpy(), expected, atol=1e-5)


@pytest.mark.parametrize("size", [(960, 1920), (100, 200), (64, 128)])
def test_predictor_outputs_at_input_size(predictor, size):
    rgb = np.random.default_rng(0).integers(0, 255, (*size, 3), dtype=np.uint8)
    result = predictor.predict(rgb)
    assert result.range_m.shape == size and result.range_m.dtype == np.float32
    assert result.in_range.shape == size and result.in_range.dtype == bool
    assert np.array_equal(result.in_range, np.isfinite(result.range_m))
    assert set(result.timings) == {"preprocess", "inference", "postprocess"}
    assert result.rgb is rgb


def test_predictor_matches_the_network_at_network_size(predictor):
    rgb = np.random.default_rng(1).integers(0, 255, (64, 128, 3), dtype=np.uint8)
    result = predictor.predict(rgb)
    with torch.no_grad():
        out = predictor.runner.model(predictor.preprocessor(rgb))
    expected = out["pred_depth"][0, 0].numpy() * 100
    valid = (1 - out["pred_mask"][0, 0].numpy()) > 0.5
    assert np.allclose(result.range_m[valid], expected[valid], rtol=1e-6)
    assert np.isposinf(result.range_m[~valid]).all()


def test_output_size_and_resized_rgb(predictor):
    rgb = np.random.default_rng(2).integers(0, 255, (256, 512, 3), dtype=np.uint8)
    result = predictor.predict(rgb, output_size=predictor.input_size)
    assert result.range_m.shape == (64, 128)
    assert result.rgb.shape == (64, 128, 3) and result.rgb.dtype == np.uint8


def test_runtime_settings_are_validated(predictor):
    predictor.mask_threshold = 0.7
    assert predictor.mask_threshold == 0.7
    with pytest.raises(ConfigError, match="mask_threshold"):
        predictor.mask_threshold = 1.5
    with pytest.raises(ConfigError, match="max_range"):
        predictor.max_range = -1
    predictor.mask_threshold = 0.5


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"device": "cuda"}, "CUDA is not available" if not torch.cuda.is_available() else "zzz"),
        ({"device": "tpu"}, "device must be"),
        ({"precision": "fp16"}, "fp16 needs a CUDA device"),
        ({"precision": "int8"}, "precision must be one of"),
        ({"input_size": (60, 120)}, "multiples of 16"),
        ({"input_size": (64, 64)}, "2:1"),
        ({"normalization": "zscore"}, "normalization must be one of"),
        ({"mask_threshold": 0.0}, "mask_threshold"),
        ({"model_config": "nope"}, "unknown model config"),
    ],
)
def test_bad_settings_are_clear_errors(kwargs, match):
    if kwargs.get("device") == "cuda" and torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    settings = {"checkpoint": None, "model_config": "tiny", "input_size": (64, 128), "allow_random": True}
    settings.update(kwargs)
    with pytest.raises(ConfigError, match=match):
        DepthPredictor.create(**settings)


def test_bad_images_are_image_errors(predictor):
    for bad in (np.zeros((0, 0, 3), np.uint8), np.zeros((8, 16), np.uint8), np.zeros((8, 16, 3), np.float32), "x"):
        with pytest.raises(ImageError):
            predictor.predict(bad)


def test_native_input_size_and_weights_source():
    predictor = DepthPredictor.create(None, "tiny", allow_random=True)
    assert predictor.input_size == (512, 1024) and predictor.weights.kind == "random"


@pytest.mark.parametrize("case", ["all_in_range_resized", "mixed_resized", "non_finite_resized", "network_size"])
def test_postprocess_writes_into_out_exactly_as_it_returns(case):
    """The node passes its depth message's payload as ``out``: same values as a fresh tensor."""
    rng = np.random.default_rng(3)
    depth = rng.uniform(0.01, 0.2, (8, 16))
    mask = np.zeros((8, 16))
    if case in ("mixed_resized", "non_finite_resized"):
        mask[:2] = 1.0
    if case == "non_finite_resized":
        depth[5, 5] = np.nan
    size = (8, 16) if case == "network_size" else (24, 48)
    expected, expected_in = postprocess(*_outputs(depth, mask), size)
    out = torch.full(size, -1.0)
    got, got_in = postprocess(*_outputs(depth, mask), size, out=out)
    assert got.data_ptr() == out.data_ptr()
    assert torch.equal(out.isnan(), expected.isnan()) and torch.equal(got_in, expected_in)
    assert torch.equal(torch.nan_to_num(out, nan=0.0), torch.nan_to_num(expected, nan=0.0))


def test_predictor_range_out_receives_the_range(predictor):
    rgb = np.random.default_rng(4).integers(0, 255, (96, 192, 3), dtype=np.uint8)
    expected = predictor.predict(rgb).range_m
    out = np.full((96, 192), -1.0, dtype=np.float32)
    result = predictor.predict(rgb, range_out=out)
    assert result.range_m is out
    np.testing.assert_array_equal(out, expected)
    with pytest.raises(ValueError, match="float32 array of shape"):
        predictor.predict(rgb, range_out=np.zeros((96, 191), np.float32))
