"""Output comparison shared by ONNX export verification and the TensorRT build-time accuracy gate.

Pure numpy so that it runs (and is tested) anywhere. Tolerances, in the official units
(``pred_depth`` 1.0 = 100 m, ``pred_mask`` a probability):

- float32 graph vs PyTorch float32 (export): max |diff| <= 1e-4 on both outputs;
- float32 TensorRT engine (TF32 off) vs ONNX Runtime float32: max |diff| <= 1e-3;
- mixed-precision (fp16) graph or engine vs float32: median relative depth error <= 1e-2 over the
  pixels both call in range, the in-range decision agrees on >= 99 % of the pixels, no NaN/Inf.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

OUTPUTS = ("pred_depth", "pred_mask")


@dataclass(frozen=True)
class Tolerance:
    max_abs: float | None = None
    median_rel: float | None = None
    mask_agreement: float | None = None

    def describe(self) -> str:
        parts = []
        if self.max_abs is not None:
            parts.append(f"max|diff| <= {self.max_abs:g}")
        if self.median_rel is not None:
            parts.append(f"median rel depth err <= {self.median_rel:g}")
        if self.mask_agreement is not None:
            parts.append(f"mask agreement >= {self.mask_agreement:g}")
        return ", ".join(parts) + ", finite"


EXPORT_FP32 = Tolerance(max_abs=1e-4)
ENGINE_FP32 = Tolerance(max_abs=1e-3)
MIXED_FP16 = Tolerance(median_rel=1e-2, mask_agreement=0.99)


def tolerance_for(precision: str, engine: bool = False) -> Tolerance:
    if precision == "fp32":
        return ENGINE_FP32 if engine else EXPORT_FP32
    return MIXED_FP16


def compare_outputs(
    test: dict[str, np.ndarray], reference: dict[str, np.ndarray], mask_threshold: float = 0.5
) -> dict[str, float]:
    """Metrics of ``test`` against ``reference`` (dicts with pred_depth / pred_mask arrays)."""
    metrics: dict[str, float] = {}
    for name in OUTPUTS:
        a = np.asarray(test[name], dtype=np.float64)
        b = np.asarray(reference[name], dtype=np.float64)
        if a.shape != b.shape:
            raise ValueError(f"{name}: shape {a.shape} does not match the reference {b.shape}")
        metrics[f"{name}_max_abs"] = float(np.nanmax(np.abs(a - b))) if a.size else 0.0
        metrics[f"{name}_nonfinite"] = float(np.count_nonzero(~np.isfinite(a)))
    depth_t = np.asarray(test["pred_depth"], dtype=np.float64)
    depth_r = np.asarray(reference["pred_depth"], dtype=np.float64)
    valid_t = (1.0 - np.asarray(test["pred_mask"], dtype=np.float64)) > mask_threshold
    valid_r = (1.0 - np.asarray(reference["pred_mask"], dtype=np.float64)) > mask_threshold
    metrics["mask_agreement"] = float(np.mean(valid_t == valid_r)) if valid_r.size else 1.0
    both = valid_t & valid_r & np.isfinite(depth_t) & (depth_r > 0)
    if np.any(both):
        rel = np.abs(depth_t[both] - depth_r[both]) / depth_r[both]
        metrics["depth_median_rel"] = float(np.median(rel))
        metrics["depth_p99_rel"] = float(np.percentile(rel, 99))
    else:  # nothing in range in both: compare everywhere instead of reporting nothing
        rel = np.abs(depth_t - depth_r) / np.maximum(np.abs(depth_r), 1e-6)
        metrics["depth_median_rel"] = float(np.nanmedian(rel)) if rel.size else 0.0
        metrics["depth_p99_rel"] = float(np.nanpercentile(rel, 99)) if rel.size else 0.0
    metrics["valid_fraction"] = float(np.mean(valid_r)) if valid_r.size else 0.0
    return metrics


def failures(metrics: dict[str, float], tolerance: Tolerance) -> list[str]:
    """Human-readable list of the tolerances ``metrics`` violates (empty: within tolerance)."""
    out = []
    for name in OUTPUTS:
        if metrics[f"{name}_nonfinite"]:
            out.append(f"{name} has {int(metrics[f'{name}_nonfinite'])} NaN/Inf values")
        if tolerance.max_abs is not None and not metrics[f"{name}_max_abs"] <= tolerance.max_abs:
            out.append(f"{name} max|diff| {metrics[f'{name}_max_abs']:.3g} > {tolerance.max_abs:g}")
    if tolerance.median_rel is not None and not metrics["depth_median_rel"] <= tolerance.median_rel:
        out.append(f"median relative depth error {metrics['depth_median_rel']:.3g} > {tolerance.median_rel:g}")
    if tolerance.mask_agreement is not None and not metrics["mask_agreement"] >= tolerance.mask_agreement:
        out.append(f"range-mask agreement {metrics['mask_agreement']:.4f} < {tolerance.mask_agreement:g}")
    return out


def summary(metrics: dict[str, float]) -> str:
    return (
        f"max|diff| depth {metrics['pred_depth_max_abs']:.2e}, mask {metrics['pred_mask_max_abs']:.2e}; "
        f"median rel depth {metrics['depth_median_rel']:.2e}; mask agreement {metrics['mask_agreement']:.4f}"
    )
