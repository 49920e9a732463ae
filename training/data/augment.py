"""The paper's augmentations, applied consistently to RGB, depth and masks.

- **yaw roll**: a circular shift of the columns by a random integer k in [0, W). An ERP is periodic
  in azimuth, so this is exactly a rotation of the camera about its vertical axis by 2πk/W; ranges
  are unchanged, only moved.
- **horizontal flip**: reverses the columns. With pixel-centre sampling (docs/conventions.md) column u goes
  to W-1-u and azimuth φ to -φ exactly: the flipped panorama is the panorama of the *mirrored* world
  (reflection in the camera's x-z plane, left and right swapped). Ranges are unchanged, the scene
  becomes its mirror image (a valid scene, with mirrored handedness).
- **colour jitter** (RGB only): brightness, contrast, saturation and hue, in random order, on
  [0, 1] RGB before ImageNet normalization.

The official loaders (datasets/*.py of Insta360-Research-Team/DAP) use
``transforms.ColorJitter((0.8, 1.2), (0.8, 1.2), (0.8, 1.2), (-0.1, 0.1))`` applied with probability
0.5: :meth:`AugmentConfig.official` (spec ``augment: official``). The plain defaults (``augment:
true``) keep hue ±0.05, which the synthetic-data recipes use.

Roll and flip are applied to the image and every (1, H, W) target tensor with the same parameters.
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

import numpy as np
import torch

_GRAY = torch.tensor([0.299, 0.587, 0.114]).view(3, 1, 1)


@dataclass(frozen=True)
class AugmentConfig:
    roll: bool = True  # random yaw roll (uniform integer shift)
    flip_p: float = 0.5  # probability of a horizontal flip
    jitter_p: float = 0.5  # probability of colour jitter
    brightness: float = 0.2  # factor in [1 - b, 1 + b]
    contrast: float = 0.2
    saturation: float = 0.2
    hue: float = 0.05  # shift in turns, in [-h, h]

    @classmethod
    def official(cls) -> AugmentConfig:
        """The official loaders' settings: roll, flip 0.5, ColorJitter(0.2, 0.2, 0.2, hue 0.1) at p 0.5."""
        return cls(roll=True, flip_p=0.5, jitter_p=0.5, brightness=0.2, contrast=0.2, saturation=0.2, hue=0.1)

    @classmethod
    def from_spec(cls, spec: Any) -> AugmentConfig | None:
        """``True`` -> defaults, ``"official"`` -> :meth:`official`, ``False``/``None`` -> None (no
        augmentation), dict -> overrides of the defaults."""
        if spec is None or spec is False:
            return None
        if spec is True:
            return cls()
        if spec == "official":
            return cls.official()
        if isinstance(spec, dict):
            known = {f.name for f in fields(cls)}
            unknown = set(spec) - known
            if unknown:
                raise ValueError(f"unknown augmentation options {sorted(unknown)}; known: {sorted(known)}")
            return cls(**spec)
        raise ValueError(f"augment must be a bool, 'official' or a dict, got {spec!r}")


def yaw_roll(x: torch.Tensor, shift: int) -> torch.Tensor:
    """Circularly shift columns by ``shift`` (camera yaw by -2π shift / W)."""
    return torch.roll(x, shifts=int(shift), dims=-1)


def hflip(x: torch.Tensor) -> torch.Tensor:
    """Mirror columns: azimuth φ -> -φ (the mirrored world)."""
    return torch.flip(x, dims=[-1])


def _rgb_to_hsv(x: torch.Tensor) -> torch.Tensor:
    r, g, b = x[0], x[1], x[2]
    maxc, _ = x.max(0)
    minc, _ = x.min(0)
    v = maxc
    delta = maxc - minc
    s = torch.where(maxc > 0, delta / maxc.clamp_min(1e-12), torch.zeros_like(maxc))
    dc = delta.clamp_min(1e-12)
    rc, gc, bc = (maxc - r) / dc, (maxc - g) / dc, (maxc - b) / dc
    h = torch.where(maxc == r, bc - gc, torch.where(maxc == g, 2.0 + rc - bc, 4.0 + gc - rc))
    h = torch.where(delta > 0, (h / 6.0) % 1.0, torch.zeros_like(h))
    return torch.stack([h, s, v])


def _hsv_to_rgb(x: torch.Tensor) -> torch.Tensor:
    h, s, v = x[0], x[1], x[2]
    i = torch.floor(h * 6.0)
    f = h * 6.0 - i
    p, q, t = v * (1 - s), v * (1 - s * f), v * (1 - s * (1 - f))
    i = i.long() % 6
    r = torch.stack([v, q, p, p, t, v])
    g = torch.stack([t, v, v, q, p, p])
    b = torch.stack([p, p, t, v, v, q])
    idx = i[None]
    return torch.stack([r.gather(0, idx)[0], g.gather(0, idx)[0], b.gather(0, idx)[0]])


def color_jitter(x: torch.Tensor, brightness: float, contrast: float, saturation: float,
                 hue: float, order: list[int]) -> torch.Tensor:
    """Apply factor-form jitter to [0, 1] RGB (3, H, W): factors 1 = identity, hue 0 = identity."""
    for op in order:
        if op == 0 and brightness != 1.0:
            x = (x * brightness).clamp(0, 1)
        elif op == 1 and contrast != 1.0:
            mean = (x * _GRAY).sum(0).mean()
            x = (mean + contrast * (x - mean)).clamp(0, 1)
        elif op == 2 and saturation != 1.0:
            gray = (x * _GRAY).sum(0, keepdim=True)
            x = (gray + saturation * (x - gray)).clamp(0, 1)
        elif op == 3 and hue != 0.0:
            hsv = _rgb_to_hsv(x)
            hsv[0] = (hsv[0] + hue) % 1.0
            x = _hsv_to_rgb(hsv).clamp(0, 1)
    return x


def apply_augmentations(image: torch.Tensor, targets: list[torch.Tensor], cfg: AugmentConfig,
                        rng: np.random.Generator) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Augment [0, 1] RGB (3, H, W) and (C, H, W) targets with the same roll / flip.

    Returns new tensors. The random draws happen in a fixed order, so one ``rng`` state gives one
    result.
    """
    width = image.shape[-1]
    shift = int(rng.integers(0, width)) if cfg.roll else 0
    flip = bool(rng.random() < cfg.flip_p)
    jitter = bool(rng.random() < cfg.jitter_p)
    factors = (float(rng.uniform(1 - cfg.brightness, 1 + cfg.brightness)),
               float(rng.uniform(1 - cfg.contrast, 1 + cfg.contrast)),
               float(rng.uniform(1 - cfg.saturation, 1 + cfg.saturation)),
               float(rng.uniform(-cfg.hue, cfg.hue)))
    order = [int(i) for i in rng.permutation(4)]

    def geo(t: torch.Tensor) -> torch.Tensor:
        if shift:
            t = yaw_roll(t, shift)
        if flip:
            t = hflip(t)
        return t

    image = geo(image)
    targets = [geo(t) for t in targets]
    if jitter:
        image = color_jitter(image, *factors, order=order)
    return image, targets
