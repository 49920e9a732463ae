"""2-D rotary position embedding of DINOv3, computed once per token grid and cached.

Each head dimension D is split in four quarters: the first half of the channels rotates with the
row coordinate, the second with the column coordinate (the official ``angles.flatten(1, 2)``
interleaves them as [row periods, column periods], then ``tile(2)`` repeats the pattern for the
rotate-half pairing). Coordinates are patch centres normalized to [-1, 1] over their own axis
("separate"), or over the longer/shorter side ("max"/"min").

Prefix tokens (CLS + storage) are not rotated. Instead of slicing them off and concatenating them
back (the reference does), the cached tables carry cos = 1, sin = 0 rows for them: x * 1 + r * 0
is exactly x, and the exported graph stays free of slices and concats.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn


def rotate_half(x: Tensor) -> Tensor:
    first, second = x.chunk(2, dim=-1)
    return torch.cat((-second, first), dim=-1)


def apply_rope(x: Tensor, sin: Tensor, cos: Tensor) -> Tensor:
    """Rotate ``x`` (..., N, D) by the angles whose sin/cos tables are (N, D)."""
    return x * cos + rotate_half(x) * sin


class RopeEmbedding(nn.Module):
    """Holds the ``periods`` buffer (loaded from checkpoints: the released ones are bf16-rounded)."""

    def __init__(self, head_dim: int, base: float = 100.0, normalize_coords: str = "separate") -> None:
        super().__init__()
        if head_dim % 4:
            raise ValueError(f"RoPE needs a head dimension divisible by 4, got {head_dim}")
        self.head_dim = head_dim
        self.normalize_coords = normalize_coords
        exponents = 2 * torch.arange(head_dim // 4, dtype=torch.float32) / (head_dim // 2)
        self.register_buffer("periods", base**exponents, persistent=True)
        self._cache: dict[tuple, tuple[Tensor, Tensor]] = {}

    def _load_from_state_dict(self, *args, **kwargs):  # new periods invalidate the tables
        self._cache.clear()
        super()._load_from_state_dict(*args, **kwargs)

    def _apply(self, fn, recurse=True):  # .to()/.cuda()/.half() invalidate the tables too
        self._cache.clear()
        return super()._apply(fn, recurse)

    def _axis_lengths(self, h: int, w: int) -> tuple[float, float]:
        if self.normalize_coords == "separate":
            return float(h), float(w)
        if self.normalize_coords == "max":
            return float(max(h, w)), float(max(h, w))
        if self.normalize_coords == "min":
            return float(min(h, w)), float(min(h, w))
        raise ValueError(f"unknown RoPE coordinate normalization {self.normalize_coords!r}")

    def compute(self, h: int, w: int, n_prefix: int) -> tuple[Tensor, Tensor]:
        """sin, cos tables of shape (n_prefix + h*w, head_dim) in float32 (no caching)."""
        device = self.periods.device
        len_h, len_w = self._axis_lengths(h, w)
        rows = torch.arange(0.5, h, device=device, dtype=torch.float32) / len_h
        cols = torch.arange(0.5, w, device=device, dtype=torch.float32) / len_w
        coords = torch.stack(torch.meshgrid(rows, cols, indexing="ij"), dim=-1).flatten(0, 1)
        coords = 2.0 * coords - 1.0  # (h*w, 2) in [-1, 1]
        periods = self.periods.to(torch.float32)
        angles = 2 * math.pi * coords[:, :, None] / periods[None, None, :]  # (hw, 2, D/4)
        angles = angles.flatten(1, 2).repeat(1, 2)  # (hw, D)
        sin, cos = torch.sin(angles), torch.cos(angles)
        if n_prefix:
            sin = torch.cat((sin.new_zeros(n_prefix, self.head_dim), sin), dim=0)
            cos = torch.cat((cos.new_ones(n_prefix, self.head_dim), cos), dim=0)
        return sin, cos

    def forward(self, h: int, w: int, n_prefix: int) -> tuple[Tensor, Tensor]:
        """Cached tables for a (h, w) patch grid; recomputed in training mode (cheap, no stale state)."""
        if self.training:
            return self.compute(h, w, n_prefix)
        key = (h, w, n_prefix, self.periods.device)
        if key not in self._cache:
            self._cache[key] = self.compute(h, w, n_prefix)
        return self._cache[key]
