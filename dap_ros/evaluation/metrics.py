"""Depth and range-mask metrics: pure numpy, independent of bags and ROS (training reuses them).

Definitions (standard; the official DAP code computes its "RMSE" as a mean absolute error, these
do not): over the evaluated pixels i with ground truth g_i and prediction p_i (metres)

- AbsRel  = mean(|p - g| / g)
- SqRel   = mean((p - g)^2 / g)
- RMSE    = sqrt(mean((p - g)^2))
- RMSElog = sqrt(mean((ln p - ln g)^2))
- delta_k = fraction with max(p / g, g / p) < 1.25^k, k = 1, 2, 3

Which pixels are evaluated (the "exclusions"):

- ground truth: NaN, +-Inf, <= 0 or > ``max_range`` are excluded from the depth metrics;
  +Inf and finite values > ``max_range`` are "beyond range" for the range-mask metrics;
- prediction: +Inf (the model says "beyond range") is scored as ``max_range`` (the value the
  official post-processing assigns), finite values are clamped to [``min_depth``, ``max_range``];
  NaN predictions are excluded and counted (``pred_invalid``), never silently scored.

Sums are kept in float64 so that results can be pooled over frames exactly
(:class:`DepthStats`), and per-frame values averaged (:class:`MetricsAccumulator`).
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field, fields

import numpy as np

from dap_ros.settings import DEPTH_SCALE_M

__all__ = [
    "DEPTH_METRICS",
    "RANGE_BANDS",
    "DepthStats",
    "FrameMetrics",
    "MaskStats",
    "MetricsAccumulator",
    "band_name",
    "frame_metrics",
    "gt_beyond_mask",
    "gt_valid_mask",
    "median_scale",
    "prepare_prediction",
    "resize_nearest",
]

DEPTH_METRICS = ("abs_rel", "sq_rel", "rmse", "rmse_log", "delta1", "delta2", "delta3")
RANGE_BANDS: tuple[tuple[float, float], ...] = ((0, 2), (2, 5), (5, 10), (10, 20), (20, 50), (50, 100))
DEFAULT_MIN_DEPTH = 1e-3  # metres; predictions are clamped up to this before logs and ratios


def band_name(lo: float, hi: float) -> str:
    return f"{lo:g}-{hi:g}m"


# --- pixel selection ------------------------------------------------------------------------

def gt_valid_mask(gt: np.ndarray, max_range: float) -> np.ndarray:
    """Pixels whose ground truth enters the depth metrics: finite, > 0 and <= max_range."""
    g = np.asarray(gt)
    with np.errstate(invalid="ignore"):
        return np.isfinite(g) & (g > 0) & (g <= max_range)


def gt_beyond_mask(gt: np.ndarray, max_range: float) -> np.ndarray:
    """Pixels the ground truth says are beyond range: +Inf (no return) or finite > max_range."""
    g = np.asarray(gt)
    with np.errstate(invalid="ignore"):
        return (g == np.inf) | (np.isfinite(g) & (g > max_range))


def prepare_prediction(pred: np.ndarray, max_range: float, min_depth: float = DEFAULT_MIN_DEPTH) -> np.ndarray:
    """Prediction as scored (float64): +Inf -> max_range, finite clamped to [min_depth, max_range],
    NaN and -Inf -> NaN (excluded)."""
    p = np.asarray(pred, dtype=np.float64)
    out = np.where(p == np.inf, max_range, p)
    out = np.where(np.isfinite(out), np.clip(out, min_depth, max_range), np.nan)
    return out


def resize_nearest(image: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour resize of an (H, W) ERP image, sampled at pixel centres.

    Output pixel (i, j) takes source pixel (floor((i + 0.5) H / h), floor((j + 0.5) W / w)), so
    integer down-sampling picks a pixel inside each block and no value is ever interpolated
    (depth must not blend across edges or with invalid pixels).
    """
    src_h, src_w = image.shape[:2]
    h, w = int(shape[0]), int(shape[1])
    if (src_h, src_w) == (h, w):
        return image
    rows = np.minimum(((np.arange(h) + 0.5) * src_h / h).astype(np.int64), src_h - 1)
    cols = np.minimum(((np.arange(w) + 0.5) * src_w / w).astype(np.int64), src_w - 1)
    return image[rows[:, None], cols[None, :]]


def median_scale(pred: np.ndarray, gt: np.ndarray) -> float:
    """s = median(gt) / median(pred) over pixels where both are finite and > 0 (NaN if none)."""
    p = np.asarray(pred, dtype=np.float64)
    g = np.asarray(gt, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        both = np.isfinite(p) & np.isfinite(g) & (p > 0) & (g > 0)
    if not both.any():
        return float("nan")
    return float(np.median(g[both]) / np.median(p[both]))


# --- sufficient statistics ------------------------------------------------------------------

@dataclass
class DepthStats:
    """Sums over evaluated pixels; :meth:`metrics` turns them into the depth metrics.

    Adding two DepthStats gives the pixel-pooled statistics of both.
    """

    count: int = 0
    abs_rel: float = 0.0
    sq_rel: float = 0.0
    sq_err: float = 0.0
    sq_log_err: float = 0.0
    delta1: int = 0
    delta2: int = 0
    delta3: int = 0

    @classmethod
    def from_pixels(cls, pred: np.ndarray, gt: np.ndarray) -> DepthStats:
        """``pred`` and ``gt``: 1-D float64 arrays of evaluated pixels (finite, > 0)."""
        if pred.size == 0:
            return cls()
        diff = pred - gt
        ratio = np.maximum(pred / gt, gt / pred)
        log_diff = np.log(pred) - np.log(gt)
        return cls(
            count=int(pred.size),
            abs_rel=float(np.sum(np.abs(diff) / gt)),
            sq_rel=float(np.sum(diff * diff / gt)),
            sq_err=float(np.sum(diff * diff)),
            sq_log_err=float(np.sum(log_diff * log_diff)),
            delta1=int(np.count_nonzero(ratio < 1.25)),
            delta2=int(np.count_nonzero(ratio < 1.25**2)),
            delta3=int(np.count_nonzero(ratio < 1.25**3)),
        )

    def __add__(self, other: DepthStats) -> DepthStats:
        return DepthStats(*(getattr(self, f.name) + getattr(other, f.name) for f in fields(self)))

    def metrics(self) -> dict[str, float | None]:
        """The depth metrics (None for every metric when no pixel was evaluated)."""
        n = self.count
        if n == 0:
            return {name: None for name in DEPTH_METRICS}
        return {
            "abs_rel": self.abs_rel / n,
            "sq_rel": self.sq_rel / n,
            "rmse": math.sqrt(self.sq_err / n),
            "rmse_log": math.sqrt(self.sq_log_err / n),
            "delta1": self.delta1 / n,
            "delta2": self.delta2 / n,
            "delta3": self.delta3 / n,
        }


@dataclass
class MaskStats:
    """Confusion counts of the range mask; positive class = "beyond range"."""

    tp: int = 0  # predicted beyond, GT beyond
    fp: int = 0  # predicted beyond, GT within range
    fn: int = 0  # predicted within range, GT beyond
    tn: int = 0

    @classmethod
    def from_masks(cls, pred_beyond: np.ndarray, gt_beyond: np.ndarray, known: np.ndarray) -> MaskStats:
        """Counts over ``known`` pixels (GT valid or beyond range)."""
        pb, gb = pred_beyond[known], gt_beyond[known]
        tp = int(np.count_nonzero(pb & gb))
        fp = int(np.count_nonzero(pb & ~gb))
        fn = int(np.count_nonzero(~pb & gb))
        return cls(tp, fp, fn, int(pb.size) - tp - fp - fn)

    def __add__(self, other: MaskStats) -> MaskStats:
        return MaskStats(self.tp + other.tp, self.fp + other.fp, self.fn + other.fn, self.tn + other.tn)

    def metrics(self) -> dict[str, float | int | None]:
        """precision, recall, IoU of "beyond range" (None where the denominator is 0), accuracy."""

        def ratio(num: int, den: int) -> float | None:
            return num / den if den else None

        total = self.tp + self.fp + self.fn + self.tn
        return {
            "precision": ratio(self.tp, self.tp + self.fp),
            "recall": ratio(self.tp, self.tp + self.fn),
            "iou": ratio(self.tp, self.tp + self.fp + self.fn),
            "accuracy": ratio(self.tp + self.tn, total),
            "tp": self.tp,
            "fp": self.fp,
            "fn": self.fn,
            "tn": self.tn,
        }


# --- one frame ------------------------------------------------------------------------------

@dataclass
class FrameMetrics:
    """Everything measured on one frame; the dicts are plain JSON-ready values."""

    depth: DepthStats
    bands: dict[str, DepthStats]
    mask: MaskStats
    aligned: DepthStats | None  # after median scale alignment (None when not requested)
    scale: float | None  # the median scale applied for ``aligned``
    gt_pixels: int  # pixels of the frame
    gt_valid: int  # GT valid for depth metrics
    gt_beyond: int  # GT beyond range
    pred_invalid: int  # GT valid but prediction NaN (excluded from depth metrics)
    pred_beyond_on_valid: int  # GT valid but prediction +Inf (scored as max_range)
    error_hist: np.ndarray | None = field(default=None, repr=False)  # (len(bins)-1, 2): n, sum abs_rel

    def to_dict(self) -> dict:
        """Plain JSON values; :meth:`from_dict` restores an equal FrameMetrics (a resumed run's)."""
        return {
            "depth": asdict(self.depth),
            "bands": {name: asdict(stats) for name, stats in self.bands.items()},
            "mask": asdict(self.mask),
            "aligned": None if self.aligned is None else asdict(self.aligned),
            "scale": self.scale,
            "counts": [self.gt_pixels, self.gt_valid, self.gt_beyond, self.pred_invalid, self.pred_beyond_on_valid],
            "error_hist": None if self.error_hist is None else self.error_hist.tolist(),
        }

    @classmethod
    def from_dict(cls, data: dict) -> FrameMetrics:
        hist = data["error_hist"]
        return cls(
            DepthStats(**data["depth"]),
            {name: DepthStats(**stats) for name, stats in data["bands"].items()},
            MaskStats(**data["mask"]),
            None if data["aligned"] is None else DepthStats(**data["aligned"]),
            data["scale"],
            *data["counts"],
            error_hist=None if hist is None else np.asarray(hist, dtype=np.float64),
        )

    def summary(self) -> dict[str, float | int | None]:
        out: dict[str, float | int | None] = dict(self.depth.metrics())
        out.update(
            valid_pixels=self.gt_valid,
            gt_beyond_pixels=self.gt_beyond,
            pred_invalid_pixels=self.pred_invalid,
            mask_iou=self.mask.metrics()["iou"],
        )
        if self.aligned is not None:
            out["scale"] = self.scale
            out["aligned_abs_rel"] = self.aligned.metrics()["abs_rel"]
        return out


ERROR_BINS_M = np.concatenate([np.arange(0.0, 10.0, 0.5), np.arange(10.0, 20.0, 1.0), np.arange(20.0, 101.0, 5.0)])


def frame_metrics(
    pred: np.ndarray,
    gt: np.ndarray,
    max_range: float = DEPTH_SCALE_M,
    *,
    bands: Sequence[tuple[float, float]] = RANGE_BANDS,
    align: bool = False,
    min_depth: float = DEFAULT_MIN_DEPTH,
    error_bins: np.ndarray | None = ERROR_BINS_M,
) -> FrameMetrics:
    """Metrics of one prediction (H, W metres, +Inf beyond range, NaN invalid) against ground
    truth of the same shape (metres; NaN / <= 0 invalid; +Inf or > max_range beyond range).

    Bands are half-open [lo, hi) on the ground truth, except that the band reaching
    ``max_range`` includes it (a GT of exactly 100 m lies in 50-100 m); bands starting at or
    beyond ``max_range`` stay empty.
    """
    pred = np.asarray(pred)
    gt = np.asarray(gt)
    if pred.shape != gt.shape:
        raise ValueError(f"prediction {pred.shape} and ground truth {gt.shape} differ in shape")
    valid = gt_valid_mask(gt, max_range)
    beyond = gt_beyond_mask(gt, max_range)
    p = prepare_prediction(pred, max_range, min_depth)
    pred_ok = np.isfinite(p)
    scored = valid & pred_ok
    g_s = gt[scored].astype(np.float64)
    p_s = p[scored]
    depth = DepthStats.from_pixels(p_s, g_s)
    band_stats: dict[str, DepthStats] = {}
    for lo, hi in bands:
        if lo >= max_range:  # nothing valid lies here
            sel = np.zeros(g_s.shape, dtype=bool)
        else:
            closes = hi >= max_range  # the band that reaches max_range keeps its upper edge
            sel = (g_s >= lo) & ((g_s <= hi) if closes else (g_s < hi))
        band_stats[band_name(lo, hi)] = DepthStats.from_pixels(p_s[sel], g_s[sel])
    pred_beyond = np.asarray(pred) == np.inf
    mask = MaskStats.from_masks(pred_beyond, beyond, valid | beyond)
    aligned = scale = None
    if align:
        scale = median_scale(p_s, g_s)
        if math.isfinite(scale):
            aligned = DepthStats.from_pixels(np.clip(p_s * scale, min_depth, None), g_s)
        else:
            aligned = DepthStats()
    hist = None
    if error_bins is not None and g_s.size:
        idx = np.digitize(g_s, error_bins) - 1
        ok = (idx >= 0) & (idx < len(error_bins) - 1)
        n_bins = len(error_bins) - 1
        hist = np.zeros((n_bins, 2))
        hist[:, 0] = np.bincount(idx[ok], minlength=n_bins)
        hist[:, 1] = np.bincount(idx[ok], weights=(np.abs(p_s - g_s) / g_s)[ok], minlength=n_bins)
    return FrameMetrics(
        depth=depth,
        bands=band_stats,
        mask=mask,
        aligned=aligned,
        scale=scale,
        gt_pixels=int(gt.size),
        gt_valid=int(np.count_nonzero(valid)),
        gt_beyond=int(np.count_nonzero(beyond)),
        pred_invalid=int(np.count_nonzero(valid & ~pred_ok)),
        pred_beyond_on_valid=int(np.count_nonzero(valid & pred_beyond)),
        error_hist=hist,
    )


# --- many frames ----------------------------------------------------------------------------

def _mean(values: Iterable[float | None]) -> float | None:
    vals = [v for v in values if v is not None]
    return float(np.mean(vals)) if vals else None


class MetricsAccumulator:
    """Collects FrameMetrics; overall numbers two ways:

    - ``frame_mean``: each metric computed per frame, then averaged over frames with at least one
      evaluated pixel (the protocol of the DAP paper's tables; the top-level numbers);
    - ``pooled``: all evaluated pixels of all frames together (used for range bands, where a frame
      often has few pixels in a band, and for the range mask).
    """

    def __init__(self, bands: Sequence[tuple[float, float]] = RANGE_BANDS,
                 error_bins: np.ndarray | None = ERROR_BINS_M):
        self.bands = tuple(bands)
        self.error_bins = error_bins
        self.frames: list[FrameMetrics] = []

    def add(self, frame: FrameMetrics) -> None:
        self.frames.append(frame)

    def __len__(self) -> int:
        return len(self.frames)

    def _frame_mean(self, stats: Iterable[DepthStats]) -> dict[str, float | None]:
        per_frame = [s.metrics() for s in stats if s.count]
        return {name: _mean(m[name] for m in per_frame) for name in DEPTH_METRICS}

    def summary(self) -> dict:
        frames = self.frames
        pooled = sum((f.depth for f in frames), DepthStats())
        out: dict = {
            "frames_with_gt": len(frames),
            "frames_evaluated": sum(1 for f in frames if f.depth.count),
            "frame_mean": self._frame_mean(f.depth for f in frames),
            "pooled": pooled.metrics(),
            "bands": {},
            "range_mask": sum((f.mask for f in frames), MaskStats()).metrics(),
            "pixels": {
                "total": sum(f.gt_pixels for f in frames),
                "evaluated": pooled.count,
                "gt_valid": sum(f.gt_valid for f in frames),
                "gt_beyond_range": sum(f.gt_beyond for f in frames),
                "pred_invalid_on_valid_gt": sum(f.pred_invalid for f in frames),
                "pred_beyond_range_on_valid_gt": sum(f.pred_beyond_on_valid for f in frames),
            },
        }
        for lo, hi in self.bands:
            name = band_name(lo, hi)
            band = sum((f.bands[name] for f in frames if name in f.bands), DepthStats())
            out["bands"][name] = {"lo_m": lo, "hi_m": hi, "pixels": band.count, **band.metrics()}
        aligned = [f for f in frames if f.aligned is not None]
        if aligned:
            scales = [f.scale for f in aligned if f.scale is not None and math.isfinite(f.scale)]
            out["median_aligned"] = {
                "frame_mean": self._frame_mean(f.aligned for f in aligned),
                "pooled": sum((f.aligned for f in aligned), DepthStats()).metrics(),
                "scale_median": float(np.median(scales)) if scales else None,
                "scale_min": min(scales) if scales else None,
                "scale_max": max(scales) if scales else None,
            }
        return out

    def error_vs_range(self) -> dict[str, list[float]] | None:
        """Pooled AbsRel per GT range bin: {'bin_lo', 'bin_hi', 'pixels', 'abs_rel'}."""
        hists = [f.error_hist for f in self.frames if f.error_hist is not None]
        if not hists or self.error_bins is None:
            return None
        total = np.sum(hists, axis=0)
        with np.errstate(invalid="ignore", divide="ignore"):
            abs_rel = np.where(total[:, 0] > 0, total[:, 1] / np.maximum(total[:, 0], 1), np.nan)
        return {
            "bin_lo": self.error_bins[:-1].tolist(),
            "bin_hi": self.error_bins[1:].tolist(),
            "pixels": total[:, 0].astype(int).tolist(),
            "abs_rel": [None if not math.isfinite(v) else float(v) for v in abs_rel],
        }
