"""The DAP paper's evaluation protocol, as the official ``test/eval.py``, ``test/metrics_st.py`` and
``datasets/*.py`` of Insta360-Research-Team/DAP compute it (docs/evaluation.md compares it with
dap_ros's standard protocol).

Per image, at the network size (H, W) (``--input-size``; 512x1024 in the official test config):

- input: decoded with OpenCV (BGR -> RGB), resized with ``cv2.INTER_CUBIC`` (no antialiasing),
  scaled to [0, 1], ImageNet-normalized;
- prediction: the network's depth (1 = 100 m), set to 1 where ``1 - pred_mask > 0.5`` fails;
- ground truth: resized with ``cv2.INTER_NEAREST`` (the top-left sample of each block when
  shrinking), then values above the dataset's clamp set to it (101 m for Stanford2D3D and
  Matterport3D, which the mask then excludes; 100 m for Deep360 and DAP-Test, which stays in),
  evaluated where 0 < gt <= 100 m and not NaN, divided by 100 and clipped to [0.001, 1];
- metrics: the nine below, per image, averaged over images, in units of 100 m.

Official names and definitions (g ground truth, p prediction, over the evaluated pixels):
``abs_`` = mean|g - p|, ``abs_rel`` = mean(|g - p| / g), ``sq_rel`` = mean((g - p)^2 / g),
``rms`` = mean(sqrt((g - p)^2)) (a mean absolute error, equal to ``abs_``), ``log_rms`` =
mean(sqrt((log10 g - log10 p)^2)), ``log10`` = mean|log10(p / g)|, ``a1..a3`` = fraction with
max(g/p, p/g) < 1.25, 1.25^2, 1.25^3.
"""
from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from dap_ros.errors import ConfigError, ImageError
from dap_ros.settings import DEPTH_SCALE_M

PAPER_METRICS = ("abs_", "abs_rel", "sq_rel", "rms", "log_rms", "log10", "a1", "a2", "a3")
GT_CLAMP_M = {"stanford2d3d": 101.0, "matterport3d": 101.0, "deep360": 100.0, "insta23k": 100.0, "list": 100.0}
GT_MIN_NORMALIZED = 0.001  # the official clip of normalized ground truth: 0.1 m
DEFINITIONS = {
    "abs_": "mean(|g - p|), units of 100 m",
    "abs_rel": "mean(|g - p| / g)",
    "sq_rel": "mean((g - p)^2 / g), units of 100 m",
    "rms": "mean(sqrt((g - p)^2)), units of 100 m (the official 'rms' is a mean absolute error)",
    "log_rms": "mean(sqrt((log10 g - log10 p)^2)) (a mean absolute log10 error)",
    "log10": "mean(|log10(p / g)|)",
    "a1": "fraction with max(g/p, p/g) < 1.25 (a2: 1.25^2, a3: 1.25^3)",
    "aggregation": "per image, then the mean over images (images without an evaluated pixel are left out "
                   "and counted; the official code would average in a NaN)",
}


def cv2_module():
    """OpenCV, whose resize semantics the protocol is defined by (the ``eval`` extra)."""
    try:
        import cv2
    except ImportError:
        raise ConfigError("--protocol paper needs OpenCV: pip install 'dap_ros[eval]' "
                          "(opencv-python-headless)") from None
    return cv2


def read_rgb(path, dataset: str) -> np.ndarray:
    """uint8 RGB as the official loaders read it: ``cv2.imread`` (3 channels), BGR -> RGB,
    Deep360's Cassini image resampled to ERP."""
    cv2 = cv2_module()
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise ImageError(f"cannot read image {path} (OpenCV)")
    rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    if dataset == "deep360":
        from dap_ros.evaluation.datasets import cassini_rgb

        rgb = cassini_rgb(rgb, path)
    return rgb


def network_input(rgb: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """uint8 RGB resized to (H, W) with bicubic interpolation, no antialiasing (cv2.INTER_CUBIC)."""
    cv2 = cv2_module()
    return np.ascontiguousarray(cv2.resize(rgb, (size[1], size[0]), interpolation=cv2.INTER_CUBIC))


def ground_truth(depth_m: np.ndarray, dataset: str, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """File depth in metres (codes in place, :func:`dap_ros.evaluation.datasets.read_depth`) ->
    (normalized ground truth float32 (H, W), evaluation mask bool (H, W)) at the network size."""
    cv2 = cv2_module()
    gt = cv2.resize(np.asarray(depth_m), (size[1], size[0]), interpolation=cv2.INTER_NEAREST).astype(np.float32)
    clamp = np.float32(GT_CLAMP_M[dataset])
    with np.errstate(invalid="ignore"):
        gt[gt > clamp] = clamp
        valid = (gt > 0) & (gt <= DEPTH_SCALE_M) & ~np.isnan(gt)
        normalized = np.clip(gt / np.float32(DEPTH_SCALE_M), GT_MIN_NORMALIZED, 1.0).astype(np.float32)
    return normalized, valid


def within_range(mask: np.ndarray) -> np.ndarray:
    """The official rule on the network's beyond-range probability: in range where 1 - mask > 0.5."""
    return (np.float32(1) - np.asarray(mask, dtype=np.float32)) > 0.5


def prediction(depth: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Network outputs (depth / 100 m, beyond-range probability) -> the official prediction: the
    depth where :func:`within_range`, else 1 (100 m)."""
    within = within_range(mask)
    return np.where(within, np.asarray(depth, dtype=np.float32), np.float32(1)).astype(np.float32)


def image_metrics(pred: np.ndarray, gt: np.ndarray, valid: np.ndarray) -> dict[str, float] | None:
    """The nine official metrics of one image (None: no evaluated pixel). Computed in float64 from
    the float32 inputs; the official float32 torch arithmetic agrees to float rounding."""
    g = gt[valid].astype(np.float64)
    p = pred[valid].astype(np.float64)
    if g.size == 0:
        return None
    with np.errstate(divide="ignore", invalid="ignore"):
        diff = g - p
        ratio = np.maximum(g / p, p / g)
        log_diff = np.log10(g) - np.log10(p)
        return {
            "abs_": float(np.mean(np.abs(diff))),
            "abs_rel": float(np.mean(np.abs(diff) / g)),
            "sq_rel": float(np.mean(diff * diff / g)),
            "rms": float(np.mean(np.sqrt(diff * diff))),
            "log_rms": float(np.mean(np.sqrt(log_diff * log_diff))),
            "log10": float(np.mean(np.abs(np.log10(p / g)))),
            "a1": float(np.mean(ratio < 1.25)),
            "a2": float(np.mean(ratio < 1.25**2)),
            "a3": float(np.mean(ratio < 1.25**3)),
        }


def summary(per_image: Iterable[dict[str, float] | None]) -> dict[str, float | int | None]:
    """Mean of each metric over the images with an evaluated pixel, and the image counts."""
    scored = list(per_image)
    evaluated = [m for m in scored if m is not None]
    def mean(name: str) -> float | None:  # a non-finite value (stored as None) makes the mean infinite
        values = [np.inf if m[name] is None else m[name] for m in evaluated]
        return float(np.mean(values)) if values else None

    out: dict[str, float | int | None] = {name: mean(name) for name in PAPER_METRICS}
    out["images"] = len(evaluated)
    out["images_without_valid_gt"] = len(scored) - len(evaluated)
    return out
