"""L_mask: range-mask loss = squared error + 0.5 · Dice loss.

``pred_mask`` is the predicted probability of "beyond range"; the target ``beyond`` is 1 beyond
100 m / sky, else 0. Pixels count where the target is known: valid depth or beyond (unknown-depth
pixels are excluded). With weights w = M_distort on those pixels, per image:

    MSE  = Σ w (p - b)² / Σ w
    Dice = 1 - (2 Σ w p b + s) / (Σ w p + Σ w b + s),  s = 1

and L_mask = mean_images(MSE + 0.5 Dice). Identical binary inputs give 0 (also without any beyond
pixel, thanks to the smoothing s).
"""
from __future__ import annotations

import torch

from training.losses.common import as_float, batch_mean, masked_weight, per_image_sum

DICE_WEIGHT = 0.5
SMOOTH = 1.0


def mask_loss(pred_mask: torch.Tensor, beyond: torch.Tensor, known: torch.Tensor, weight: torch.Tensor | None = None,
              dice_weight: float = DICE_WEIGHT, smooth: float = SMOOTH) -> torch.Tensor:
    p = as_float(pred_mask)
    m = masked_weight(known, weight, p)
    sel = m > 0
    b = torch.where(sel, as_float(beyond), torch.zeros_like(p))
    p = torch.where(sel, p, torch.zeros_like(p))
    den = per_image_sum(m)
    has = den > 0
    mse = per_image_sum(m * (p - b) ** 2) / den.clamp_min(1e-12)
    inter = per_image_sum(m * p * b)
    dice = 1.0 - (2.0 * inter + smooth) / (per_image_sum(m * p) + per_image_sum(m * b) + smooth)
    return batch_mean(mse + dice_weight * dice, has, p)
