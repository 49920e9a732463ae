"""L_normal: L1 between surface normals computed from the ERP points of prediction and ground truth.

Points are depth · ray in metres (depth × 100, so tiny official-unit differences do not meet the
normalization epsilon); normals by central differences (training.losses.geometry). Per pixel the
loss is Σ_xyz |n_pred - n_gt| over pixels whose 4 neighbours are valid too, distortion-weighted mean.
"""
from __future__ import annotations

import torch

from dap_ros.settings import DEPTH_SCALE_M
from training.losses.common import as_float, weighted_mean
from training.losses.geometry import back_project, neighbour_valid, normals_from_points


def normal_loss(pred: torch.Tensor, target: torch.Tensor, valid: torch.Tensor,
                weight: torch.Tensor | None = None) -> torch.Tensor:
    pred, target = as_float(pred), as_float(target)
    target = torch.where(valid, target, torch.ones_like(target))
    n_pred = normals_from_points(back_project(pred * DEPTH_SCALE_M))
    n_gt = normals_from_points(back_project(target * DEPTH_SCALE_M))
    per_pixel = (n_pred - n_gt).abs().sum(1, keepdim=True)
    return weighted_mean(per_pixel, neighbour_valid(valid), weight)
