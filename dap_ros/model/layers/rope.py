"""2-D rotary position embedding of DINOv3, computed once per token grid and cached.

Each head dimension D is split in four quarters: the first half of the channels rotates with the
row coordinate, the second with the column coordinate (the official ``angles.flatten(1, 2)``
interleaves them as [row periods, column periods], then ``tile(2)`` repeats the pattern for the
rotate-half pairing). Coordinates are patch centres normalized to [-1, 1] over their own axis
("separate"), or over the longer/shorter side ("max"/"min").

Prefix tokens (CLS + storage) are not rotated. Instead of slicing them off and concatenating them
back (the reference does), the cached tables carry cos = 1, sin = 0 rows for them: x * 1 + r * 0
is exactly x, and the exported graph stays free of slices and concats.

Training-time coordinate rescaling (DINOv3 ``rescale_coords``): the official ViT-L/16 hub
constructor sets ``pos_embed_rope_rescale_coords=2`` (no ``shift_coords``, no ``jitter_coords``),
and the official ``RopePositionEmbedding.forward`` then multiplies the [-1, 1] coordinates by one
log-uniform scale s = exp(U(-log 2, log 2)) in [1/2, 2], shared by both axes, drawn afresh on every
forward in training mode. Here that is off unless :meth:`RopeEmbedding.set_rescale_coords` turns it
on (the training config does, ``model.rope_rescale_coords``); the scale is drawn from the module's
own ``torch.Generator`` (:meth:`RopeEmbedding.seed_jitter`) so runs are reproducible. With jitter
on, training-mode tables are computed per forward (nothing cached). Eval mode never jitters and
always uses the cached tables.
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
        self.rescale_coords: float | None = None  # training-only log-uniform scale in [1/r, r]
        self._jitter_gen: torch.Generator | None = None  # CPU generator of the scale draws

    def set_rescale_coords(self, rescale: float | None, seed: int | None = None) -> None:
        """Turn the official training-mode coordinate rescaling on (``rescale`` >= 1, DINOv3 ViT-L
        uses 2) or off (None). ``seed`` (re)seeds the scale generator (default seed 0)."""
        if rescale is not None and not (math.isfinite(rescale) and rescale >= 1.0):
            raise ValueError(f"rescale_coords must be None or a number >= 1, got {rescale!r}")
        self.rescale_coords = None if rescale is None else float(rescale)
        if self.rescale_coords is not None and (self._jitter_gen is None or seed is not None):
            self.seed_jitter(0 if seed is None else seed)

    def seed_jitter(self, seed: int) -> None:
        """Seed the generator of the training-mode scale draws (one draw per training forward)."""
        if self._jitter_gen is None:
            self._jitter_gen = torch.Generator()
        self._jitter_gen.manual_seed(int(seed) % 2**63)

    def draw_scale(self) -> Tensor:
        """One scale exp(U(-log r, log r)) as a float32 tensor of shape (1,), as the official
        ``torch.empty(1).uniform_(-log r, log r).exp()`` but from this module's generator."""
        if self.rescale_coords is None:
            raise RuntimeError("coordinate rescaling is off (set_rescale_coords)")
        if self._jitter_gen is None:
            self.seed_jitter(0)
        high = math.log(self.rescale_coords)
        return torch.empty(1, dtype=torch.float32).uniform_(-high, high, generator=self._jitter_gen).exp()

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

    def compute(self, h: int, w: int, n_prefix: int, scale: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """sin, cos tables of shape (n_prefix + h*w, head_dim) in float32 (no caching); ``scale``
        (a (1,) tensor) multiplies the [-1, 1] coordinates, as the official ``rescale_coords``."""
        device = self.periods.device
        len_h, len_w = self._axis_lengths(h, w)
        rows = torch.arange(0.5, h, device=device, dtype=torch.float32) / len_h
        cols = torch.arange(0.5, w, device=device, dtype=torch.float32) / len_w
        coords = torch.stack(torch.meshgrid(rows, cols, indexing="ij"), dim=-1).flatten(0, 1)
        coords = 2.0 * coords - 1.0  # (h*w, 2) in [-1, 1]
        if scale is not None:
            coords = coords * scale.to(device=device, dtype=torch.float32)
        periods = self.periods.to(torch.float32)
        angles = 2 * math.pi * coords[:, :, None] / periods[None, None, :]  # (hw, 2, D/4)
        angles = angles.flatten(1, 2).repeat(1, 2)  # (hw, D)
        sin, cos = torch.sin(angles), torch.cos(angles)
        if n_prefix:
            sin = torch.cat((sin.new_zeros(n_prefix, self.head_dim), sin), dim=0)
            cos = torch.cat((cos.new_ones(n_prefix, self.head_dim), cos), dim=0)
        return sin, cos

    def forward(self, h: int, w: int, n_prefix: int) -> tuple[Tensor, Tensor]:
        """Cached tables for a (h, w) patch grid; recomputed in training mode (cheap, no stale state),
        with a fresh random coordinate scale per call when ``rescale_coords`` is set."""
        if self.training:
            scale = self.draw_scale() if self.rescale_coords is not None else None
            return self.compute(h, w, n_prefix, scale)
        key = (h, w, n_prefix, self.periods.device)
        if key not in self._cache:
            self._cache[key] = self.compute(h, w, n_prefix)
        return self._cache[key]
