"""Depth / range-mask metrics: exact values, analytic values, exclusions, band and mask edges."""
from __future__ import annotations

import math

import numpy as np
import pytest

from dap_ros.evaluation.metrics import (
    RANGE_BANDS,
    DepthStats,
    MetricsAccumulator,
    frame_metrics,
    gt_beyond_mask,
    gt_valid_mask,
    median_scale,
    resize_nearest,
)


def gt_image(seed: int = 0, shape=(32, 64)) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.uniform(0.5, 95.0, shape).astype(np.float32)


def test_prediction_equal_to_ground_truth_is_exactly_perfect():
    gt = gt_image()
    gt[0, :5] = np.nan
    gt[1, :5] = np.inf
    pred = gt.copy()
    fm = frame_metrics(pred, gt, 100.0)
    m = fm.depth.metrics()
    assert m == {"abs_rel": 0.0, "sq_rel": 0.0, "rmse": 0.0, "rmse_log": 0.0,
                 "delta1": 1.0, "delta2": 1.0, "delta3": 1.0}
    mask = fm.mask.metrics()
    assert (mask["precision"], mask["recall"], mask["iou"], mask["accuracy"]) == (1.0, 1.0, 1.0, 1.0)
    assert fm.gt_valid == gt.size - 10 and fm.gt_beyond == 5


@pytest.mark.parametrize("k", [2.0, 0.5, 1.1, 1.2])
def test_multiplicative_error_gives_analytic_values(k):
    gt = gt_image(1).astype(np.float64)
    pred = gt * k  # float64: the only rounding is in the sums
    m = frame_metrics(pred, gt, 1000.0).depth.metrics()
    g = gt.ravel()
    assert m["abs_rel"] == pytest.approx(abs(k - 1), rel=1e-12)
    assert m["sq_rel"] == pytest.approx((k - 1) ** 2 * g.mean(), rel=1e-12)
    assert m["rmse"] == pytest.approx(abs(k - 1) * math.sqrt(np.mean(g * g)), rel=1e-12)
    assert m["rmse_log"] == pytest.approx(abs(math.log(k)), rel=1e-9)
    ratio = max(k, 1 / k)
    for i in (1, 2, 3):
        assert m[f"delta{i}"] == (1.0 if ratio < 1.25**i else 0.0)


def test_rmse_is_root_of_mean_square_not_mean_absolute_error():
    gt = np.full((1, 4), 10.0)
    pred = np.array([[10.0, 10.0, 10.0, 14.0]])
    m = frame_metrics(pred, gt).depth.metrics()
    assert m["rmse"] == pytest.approx(2.0)  # sqrt(16 / 4); the official "RMSE" would give 1.0


def test_ground_truth_exclusions():
    gt = np.array([[np.nan, -1.0, 0.0, np.inf, -np.inf, 100.0, 100.5, 5.0]])
    valid = gt_valid_mask(gt, 100.0)
    beyond = gt_beyond_mask(gt, 100.0)
    assert valid.tolist() == [[False, False, False, False, False, True, False, True]]
    assert beyond.tolist() == [[False, False, False, True, False, False, True, False]]
    fm = frame_metrics(np.full_like(gt, 5.0), gt)
    assert fm.depth.count == 2 and fm.gt_valid == 2 and fm.gt_beyond == 2


def test_prediction_semantics_inf_scored_at_max_range_nan_excluded():
    gt = np.array([[50.0, 50.0, 50.0]])
    pred = np.array([[np.inf, np.nan, 50.0]])
    fm = frame_metrics(pred, gt, 100.0)
    assert fm.depth.count == 2  # the NaN pixel is left out ...
    assert fm.pred_invalid == 1  # ... and counted
    assert fm.pred_beyond_on_valid == 1
    assert fm.depth.metrics()["abs_rel"] == pytest.approx((1.0 + 0.0) / 2)  # inf -> 100 m: |100-50|/50


def test_band_edges_are_half_open_and_last_band_includes_max_range():
    values = [0.0001, 1.9999, 2.0, 4.9999, 5.0, 10.0, 19.999, 20.0, 50.0, 99.99, 100.0]
    gt = np.array([values])
    fm = frame_metrics(gt.copy(), gt, 100.0)
    counts = {name: s.count for name, s in fm.bands.items()}
    assert counts == {"0-2m": 2, "2-5m": 2, "5-10m": 1, "10-20m": 2, "20-50m": 1, "50-100m": 3}
    assert sum(counts.values()) == fm.depth.count == len(values)
    assert [f"{lo:g}-{hi:g}m" for lo, hi in RANGE_BANDS] == list(counts)


def test_band_at_lower_max_range_keeps_its_upper_edge():
    gt = np.array([[20.0, 20.0001, 30.0]])
    fm = frame_metrics(gt.copy(), gt, 20.0)
    assert fm.bands["10-20m"].count == 1 and fm.gt_beyond == 2 and fm.bands["20-50m"].count == 0


def test_range_mask_scores_at_their_edges():
    # GT: 2 beyond, 2 valid, 1 invalid (ignored). Prediction: beyond on 1 true beyond + 1 valid.
    gt = np.array([[np.inf, 150.0, 10.0, 20.0, np.nan]])
    pred = np.array([[np.inf, 30.0, np.inf, 20.0, np.inf]])
    mask = frame_metrics(pred, gt, 100.0).mask.metrics()
    assert (mask["tp"], mask["fp"], mask["fn"], mask["tn"]) == (1, 1, 1, 1)
    assert mask["precision"] == 0.5 and mask["recall"] == 0.5 and mask["iou"] == pytest.approx(1 / 3)
    # nothing beyond anywhere: precision/recall/IoU undefined (None), accuracy 1
    none = frame_metrics(np.full((2, 2), 3.0), np.full((2, 2), 3.0)).mask.metrics()
    assert none["precision"] is None and none["recall"] is None and none["iou"] is None and none["accuracy"] == 1.0


def test_median_alignment_removes_a_global_scale_and_is_reported_separately():
    gt = gt_image(2).astype(np.float64) / 4  # pred = 3 gt stays below max_range
    fm = frame_metrics(gt * 3.0, gt, 100.0, align=True)
    assert fm.scale == pytest.approx(1 / 3)
    assert fm.depth.metrics()["abs_rel"] == pytest.approx(2.0)
    assert fm.aligned.metrics()["abs_rel"] == pytest.approx(0.0, abs=1e-12)
    assert median_scale(np.array([np.nan, 2.0]), np.array([1.0, 4.0])) == 2.0


def test_accumulator_frame_mean_and_pooled():
    acc = MetricsAccumulator()
    small = np.full((1, 2), 10.0)
    big = np.full((1, 6), 10.0)
    acc.add(frame_metrics(small * 2.0, small))  # abs_rel 1.0 on 2 pixels
    acc.add(frame_metrics(big.copy(), big))  # abs_rel 0.0 on 6 pixels
    acc.add(frame_metrics(np.ones((1, 2)), np.full((1, 2), np.nan)))  # no valid GT: left out of the mean
    s = acc.summary()
    assert s["frame_mean"]["abs_rel"] == pytest.approx(0.5)
    assert s["pooled"]["abs_rel"] == pytest.approx(2 / 8)
    assert s["frames_with_gt"] == 3 and s["frames_evaluated"] == 2
    assert s["bands"]["5-10m"]["pixels"] == 0 and s["bands"]["10-20m"]["pixels"] == 8
    evr = acc.error_vs_range()
    assert sum(evr["pixels"]) == 8


def test_stats_add_is_pixel_pooling():
    a, b = np.array([1.0, 2.0]), np.array([1.5, 2.5])
    joined = DepthStats.from_pixels(np.concatenate([a, b]) * 1.1, np.concatenate([a, b]))
    split = DepthStats.from_pixels(a * 1.1, a) + DepthStats.from_pixels(b * 1.1, b)
    for key, value in joined.metrics().items():
        assert split.metrics()[key] == pytest.approx(value)
    assert DepthStats().metrics()["rmse"] is None


def test_resize_nearest_samples_pixel_centres_without_interpolation():
    src = np.arange(8 * 16, dtype=np.float32).reshape(8, 16)
    src[0, 0] = np.nan
    down = resize_nearest(src, (4, 8))
    assert down[1, 1] == src[3, 3] and np.isnan(resize_nearest(src, (8, 16))[0, 0])
    up = resize_nearest(src, (16, 32))
    assert up[0, 0] != up[0, 0] and up[2, 2] == src[1, 1]  # NaN copied, no blending
    assert set(np.unique(up[np.isfinite(up)])) <= set(src[np.isfinite(src)].tolist())
    assert resize_nearest(src, (8, 16)) is src
