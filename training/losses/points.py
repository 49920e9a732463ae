"""L_pts: L1 between back-projected 3-D points, in official units (1 = 100 m).

Per pixel: Σ_xyz |d_pred · ray - d_gt · ray| = |d_pred - d_gt| (|r_x| + |r_y| + |r_z|),
distortion-weighted mean over valid pixels.
"""
from __future__ import annotations

import torch

from training.losses.common import as_float, weighted_mean
from training.losses.geometry import back_project


def points_loss(pred: torch.Tensor, target: torch.Tensor, valid: torch.Tensor,
                weight: torch.Tensor | None = None) -> torch.Tensor:
    pred, target = as_float(pred), as_float(target)
    target = torch.where(valid, target, torch.zeros_like(target))
    per_pixel = (back_project(pred) - back_project(target)).abs().sum(1, keepdim=True)
    return weighted_mean(per_pixel, valid, weight)
