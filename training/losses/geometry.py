"""Back-projection and normals on ERP depth maps (docs/conventions.md rays, REP 103 frame)."""
from __future__ import annotations

import torch

from training.losses.common import erp_rays


def back_project(depth: torch.Tensor) -> torch.Tensor:
    """(B, 1, H, W) radial depth -> points (B, 3, H, W) = depth · ray (same units as depth)."""
    _, _, h, w = depth.shape
    return depth * erp_rays(h, w, depth.device, depth.dtype)


def _neighbours(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Right, left (circular in azimuth), down, up (replicated at the poles) neighbours."""
    right = torch.roll(x, -1, dims=-1)
    left = torch.roll(x, 1, dims=-1)
    down = torch.cat([x[..., 1:, :], x[..., -1:, :]], dim=-2)
    up = torch.cat([x[..., :1, :], x[..., :-1, :]], dim=-2)
    return right, left, down, up


def normals_from_points(points: torch.Tensor, eps: float = 1e-20) -> torch.Tensor:
    """Unit normals (B, 3, H, W) from ERP points by central differences.

    n ∝ (P[u+1] - P[u-1]) × (P[v+1] - P[v-1]); azimuth wraps around, at the pole rows the vertical
    difference is one-sided. The sign is fixed by the pixel grid (the same for prediction and
    ground truth). Normalization uses sqrt(|c|² + eps) so the gradient is finite everywhere.
    """
    right, left, down, up = _neighbours(points)
    du = right - left
    dv = down - up
    c = torch.cross(du, dv, dim=1)
    return c / torch.sqrt((c * c).sum(1, keepdim=True) + eps)


def neighbour_valid(valid: torch.Tensor) -> torch.Tensor:
    """valid at a pixel and at its four neighbours (the ones the normal uses)."""
    right, left, down, up = _neighbours(valid)
    return valid & right & left & down & up
