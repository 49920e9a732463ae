"""Shared pieces of the losses: the ERP distortion weight, ray tables, masked weighted means.

Tensor conventions: predictions and targets are (B, 1, H, W) in official units (range / 100 m);
``valid`` is a bool (B, 1, H, W) mask; ``weight`` is an optional per-pixel weight broadcastable to
(B, 1, H, W) (the distortion map M_distort). Every loss returns a scalar tensor; images without a
usable pixel contribute nothing (the batch mean is over the images that have one; with none the
loss is an exact 0 that still carries a graph).
"""
from __future__ import annotations

import math
from functools import lru_cache

import torch

from dap_ros.geometry import ray_directions_torch


@lru_cache(maxsize=32)
def _distortion_cached(height: int, width: int, device: str, dtype: torch.dtype) -> torch.Tensor:
    v = torch.arange(height, dtype=torch.float64)
    lat = math.pi / 2 - math.pi * (v + 0.5) / height
    w = torch.cos(lat).view(1, 1, height, 1).expand(1, 1, height, width)
    return w.to(device=device, dtype=dtype).contiguous()


def distortion_weight(height: int, width: int, device=None, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """M_distort (1, 1, H, W): cos(latitude) at the pixel centres.

    An ERP pixel at latitude θ covers a solid angle proportional to cos θ, so weighting per-pixel
    losses by cos θ makes a weighted mean an integral over the sphere (each steradian counts once)
    instead of over-counting the stretched polar rows. Pixel-centre sampling keeps the weight
    positive at the pole rows (cos(π/2 - π/(2H)) = sin(π/(2H)) > 0). The weights are used inside
    weighted means, so their overall scale does not matter.
    """
    return _distortion_cached(int(height), int(width), str(torch.device(device or "cpu")), dtype)


@lru_cache(maxsize=32)
def _rays_cached(height: int, width: int, device: str, dtype: torch.dtype) -> torch.Tensor:
    return ray_directions_torch(height, width, device=device, dtype=dtype).permute(2, 0, 1)[None].contiguous()


def erp_rays(height: int, width: int, device=None, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Unit rays (1, 3, H, W) of docs/conventions.md (REP 103 frame)."""
    return _rays_cached(int(height), int(width), str(torch.device(device or "cpu")), dtype)


def as_float(x: torch.Tensor) -> torch.Tensor:
    return x.float() if x.dtype != torch.float32 and x.dtype != torch.float64 else x


def masked_weight(valid: torch.Tensor, weight: torch.Tensor | None, like: torch.Tensor) -> torch.Tensor:
    """valid (bool) times the per-pixel weight, as a float tensor shaped like ``like``."""
    m = valid.to(like.dtype).expand_as(like)
    if weight is not None:
        m = m * weight.to(like.dtype)
    return m


def per_image_sum(x: torch.Tensor) -> torch.Tensor:
    return x.flatten(1).sum(1)


def batch_mean(per_image: torch.Tensor, has_pixels: torch.Tensor, anchor: torch.Tensor) -> torch.Tensor:
    """Mean of ``per_image`` over the images with pixels; 0 (with a graph through ``anchor``) if none."""
    if bool(has_pixels.any()):
        return per_image[has_pixels].mean()
    return anchor.sum() * 0.0


def weighted_mean(x: torch.Tensor, valid: torch.Tensor, weight: torch.Tensor | None) -> torch.Tensor:
    """Per-image weighted mean of per-pixel values x over valid pixels, then batch mean.

    Invalid pixels are selected away with torch.where, so any value there (even NaN/inf) has no
    effect on the result or on the gradient.
    """
    m = masked_weight(valid, weight, x)
    xs = torch.where(m > 0, x, torch.zeros_like(x))
    num = per_image_sum(xs * m)
    den = per_image_sum(m)
    has = den > 0
    return batch_mean(num / den.clamp_min(1e-12), has, x)


def safe_log(x: torch.Tensor, floor: float = 1e-6) -> torch.Tensor:
    return torch.log(x.clamp_min(floor))
