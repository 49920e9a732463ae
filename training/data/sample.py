"""Turning decoded panoramas (uint8 RGB + radial range in metres) into training samples.

A training sample is a dict (the contract of the training loop):

- ``image``  float32 (3, H, W), ImageNet-normalized RGB;
- ``depth``  float32 (1, H, W), official units: range / 100 m, clipped to [0.001, 1];
  pixels that are not ``valid`` hold 1.0 (= 100 m, the official fill value);
- ``valid``  bool (1, H, W): ground-truth range usable (finite, > 0, <= 100 m, not masked out);
- ``beyond`` float32 (1, H, W): range-mask target, 1 = beyond 100 m or sky (+inf), else 0;
- ``domain`` str: "indoor", "outdoor" or "unknown";
- ``source`` str: file path(s) or "synthetic:<seed>".

Range semantics of the inputs follow docs/conventions.md: finite metres = measured, +inf = beyond range /
sky, NaN / <= 0 = unknown (never beyond).
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from dap_ros.settings import DEPTH_SCALE_M, IMAGENET_MEAN, IMAGENET_STD

MIN_DEPTH = 0.001  # official clip (0.1 m)

_MEAN = torch.tensor(IMAGENET_MEAN, dtype=torch.float32).view(3, 1, 1)
_STD = torch.tensor(IMAGENET_STD, dtype=torch.float32).view(3, 1, 1)


def nearest_indices(src: int, dst: int) -> np.ndarray:
    """Source index of each destination pixel centre for nearest resampling (no half-pixel drift)."""
    idx = np.floor((np.arange(dst, dtype=np.float64) + 0.5) * src / dst).astype(np.int64)
    return np.clip(idx, 0, src - 1)


def resize_nearest(arr: np.ndarray, height: int, width: int) -> np.ndarray:
    """Nearest-neighbour resize of an (H, W, ...) array by pixel centres (depth, masks)."""
    h, w = arr.shape[:2]
    if (h, w) == (height, width):
        return arr
    return arr[nearest_indices(h, height)][:, nearest_indices(w, width)]


def rgb_to_float(rgb: np.ndarray, height: int, width: int) -> torch.Tensor:
    """uint8 (h, w, 3) -> float32 (3, height, width) in [0, 1], antialiased bilinear resize."""
    arr = np.ascontiguousarray(rgb)
    if not arr.flags.writeable:
        arr = arr.copy()
    x = torch.from_numpy(arr).permute(2, 0, 1).float().div_(255.0)
    if tuple(x.shape[1:]) != (height, width):
        x = F.interpolate(x[None], size=(height, width), mode="bilinear", align_corners=False,
                          antialias=True)[0].clamp_(0.0, 1.0)
    return x


def normalize_image(x: torch.Tensor) -> torch.Tensor:
    """[0, 1] RGB (3, H, W) -> ImageNet-normalized."""
    return (x - _MEAN) / _STD


def range_targets(range_m: np.ndarray, valid_mask: np.ndarray | None = None,
                  beyond_mask: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Range in metres (H, W) -> (depth official units, valid bool, beyond bool), all (H, W).

    ``valid_mask`` (bool, optional) further restricts usable pixels; ``beyond_mask`` (bool,
    optional) marks sky / beyond-range pixels explicitly (they are never valid).
    """
    r = np.asarray(range_m, dtype=np.float32)
    with np.errstate(invalid="ignore"):
        finite = np.isfinite(r)
        beyond = np.isposinf(r) | (finite & (r > DEPTH_SCALE_M))
        valid = finite & (r > 0) & (r <= DEPTH_SCALE_M)
    if beyond_mask is not None:
        beyond = beyond | beyond_mask
        valid = valid & ~beyond_mask
    if valid_mask is not None:
        valid = valid & valid_mask
    depth = np.where(valid, np.clip(np.where(valid, r, DEPTH_SCALE_M) / DEPTH_SCALE_M, MIN_DEPTH, 1.0), 1.0)
    return depth.astype(np.float32), valid, beyond


def make_sample(rgb: np.ndarray, range_m: np.ndarray, *, height: int, width: int,
                domain: str = "unknown", source: str = "", valid_mask: np.ndarray | None = None,
                beyond_mask: np.ndarray | None = None, augment: Any = None,
                rng: np.random.Generator | None = None) -> dict:
    """Build a training sample (module docstring) from an ERP RGB image and its range image.

    RGB is resized with antialiased bilinear interpolation, range and masks with nearest
    neighbour (never blending depths). ``augment`` is an :class:`~training.data.augment.AugmentConfig`
    (or None) applied with ``rng``, consistently to image, depth and masks.
    """
    from training.data.augment import apply_augmentations

    depth, valid, beyond = range_targets(range_m, valid_mask, beyond_mask)
    depth = resize_nearest(depth, height, width)
    valid = resize_nearest(valid, height, width)
    beyond = resize_nearest(beyond, height, width)
    image = rgb_to_float(rgb, height, width)
    t_depth = torch.from_numpy(np.array(depth, dtype=np.float32))[None]
    t_valid = torch.from_numpy(np.array(valid, dtype=np.bool_))[None]
    t_beyond = torch.from_numpy(np.array(beyond, dtype=np.float32))[None]
    if augment is not None:
        image, (t_depth, t_valid, t_beyond) = apply_augmentations(
            image, [t_depth, t_valid, t_beyond], augment, rng if rng is not None else np.random.default_rng())
    return {
        "image": normalize_image(image).contiguous(),
        "depth": t_depth.contiguous(),
        "valid": t_valid.contiguous(),
        "beyond": t_beyond.contiguous(),
        "domain": domain,
        "source": source,
    }


def collate(samples: list[dict]) -> dict:
    """Stack a list of samples into a batch: tensors stacked on dim 0, everything else in lists."""
    if not samples:
        raise ValueError("collate needs at least one sample")
    batch: dict[str, Any] = {}
    for key in samples[0]:
        values = [s[key] for s in samples]
        if isinstance(values[0], torch.Tensor):
            batch[key] = torch.stack(values, 0)
        else:
            batch[key] = list(values)
    return batch
