"""Scale-invariant logarithmic loss (SILog, Eigen et al.), distortion-weighted.

Per image, with g = log(pred) - log(gt) over valid pixels and weights w = M_distort:

    D = E_w[g²] - λ E_w[g]²,   SILog = sqrt(D + ε) - sqrt(ε)

λ = 0.85 (variance focus), ε = 1e-8 (finite gradient when pred == gt; the - sqrt(ε) makes identical
inputs give exactly 0). A uniform scale error pred = k · gt gives g = log k everywhere and
SILog = sqrt((1 - λ) log² k + ε) - sqrt(ε) ≈ sqrt(1 - λ) |log k|. The batch value is the mean over
images that have valid pixels.
"""
from __future__ import annotations

import torch

from training.losses.common import as_float, batch_mean, masked_weight, per_image_sum, safe_log

LAMBDA = 0.85
EPS = 1e-8


def silog(pred: torch.Tensor, target: torch.Tensor, valid: torch.Tensor, weight: torch.Tensor | None = None,
          lam: float = LAMBDA, eps: float = EPS) -> torch.Tensor:
    """SILog between (B, 1, H, W) depths over ``valid`` pixels, weighted by ``weight``."""
    pred, target = as_float(pred), as_float(target)
    m = masked_weight(valid, weight, pred)
    sel = m > 0
    safe_t = torch.where(sel, target, torch.ones_like(target))
    g = torch.where(sel, safe_log(pred) - safe_log(safe_t), torch.zeros_like(pred))
    den = per_image_sum(m)
    has = den > 0
    den = den.clamp_min(1e-12)
    mean = per_image_sum(m * g) / den
    mean_sq = per_image_sum(m * g * g) / den
    d = (mean_sq - lam * mean * mean).clamp_min(0.0)
    per = torch.sqrt(d + eps) - eps ** 0.5
    return batch_mean(per, has, pred)
