"""L_DF: depth-fidelity loss, Gram matrices of depth over 12 perspective views.

Views: 12 pinhole cameras at the camera centre looking at the vertices of a regular icosahedron
((0, ±1, ±φ), (±1, ±φ, 0), (±φ, 0, ±1), normalized; φ = golden ratio), each with a square field of
view of 90° (FOV_DEG) and VIEW_SIZE x VIEW_SIZE pixels (default: H / 4, i.e. 128 at 512x1024 — half
of the ERP's equatorial resolution, 0.70°/px). The farthest point of the sphere from its nearest
vertex is 37.4° away, so 90° views (half-angle 45° along the axes) cover the whole sphere with overlap.
The views are sampled from the ERP with ``grid_sample`` (bilinear, align_corners=False) after a
one-column circular pad on each side, so the azimuth seam is seamless; rows clamp at the poles.

Per view, with D the (S, S) depth view, masked to the view pixels whose bilinear footprint is entirely
valid in the ground truth (sampled valid mask == 1; others set to 0 in both prediction and ground
truth) and divided by the mean ground-truth depth of the view (a detached constant shared by both,
so G is O(1) at any range while a scale error k still changes G by k²):

    G_rows = D Dᵀ / S,   G_cols = Dᵀ D / S
    L_DF = mean over batch, views and entries of (|G_rows,pred - G_rows,gt| + |G_cols,pred - G_cols,gt|) / 2

No distortion weight: the views are perspective images, already free of the ERP's polar stretching.
"""
from __future__ import annotations

import math
from functools import lru_cache

import torch
import torch.nn.functional as F

from training.losses.common import as_float

FOV_DEG = 90.0
NUM_VIEWS = 12


def icosahedron_vertices() -> torch.Tensor:
    """(12, 3) float64 unit vectors."""
    p = (1.0 + math.sqrt(5.0)) / 2.0
    v = []
    for a in (-1.0, 1.0):
        for b in (-1.0, 1.0):
            v += [(0.0, a, b * p), (a, b * p, 0.0), (b * p, 0.0, a)]
    t = torch.tensor(v, dtype=torch.float64)
    return t / t.norm(dim=1, keepdim=True)


def view_rays(size: int, fov_deg: float = FOV_DEG) -> torch.Tensor:
    """(12, S, S, 3) float64 unit rays of the 12 views (REP 103 frame; rows top-down, columns left-right)."""
    f = icosahedron_vertices()
    z = torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64).expand_as(f)
    left = torch.linalg.cross(z, f)
    left = left / left.norm(dim=1, keepdim=True)
    up = torch.linalg.cross(f, left)
    half = math.tan(math.radians(fov_deg) / 2.0)
    c = ((2.0 * torch.arange(size, dtype=torch.float64) + 1.0) / size - 1.0) * half
    a = c.view(1, 1, size, 1)  # rightwards, per column
    b = -c.view(1, size, 1, 1)  # upwards, per row
    d = f.view(12, 1, 1, 3) - a * left.view(12, 1, 1, 3) + b * up.view(12, 1, 1, 3)
    return d / d.norm(dim=-1, keepdim=True)


@lru_cache(maxsize=16)
def _grid(height: int, width: int, size: int, fov_deg: float, device: str, dtype: torch.dtype) -> torch.Tensor:
    d = view_rays(size, fov_deg)
    lon = torch.atan2(d[..., 1], d[..., 0])
    lat = torch.asin(d[..., 2].clamp(-1.0, 1.0))
    u = (math.pi - lon) / (2.0 * math.pi) * width - 0.5  # ERP column (docs/conventions.md)
    v = (math.pi / 2.0 - lat) / math.pi * height - 0.5
    x = (2.0 * (u + 1.0) + 1.0) / (width + 2) - 1.0  # after the 1-column circular pad
    y = (2.0 * v + 1.0) / height - 1.0
    g = torch.stack([x, y], dim=-1).reshape(1, 12 * size, size, 2)
    return g.to(device=device, dtype=dtype)


def sample_views(erp: torch.Tensor, size: int, fov_deg: float = FOV_DEG) -> torch.Tensor:
    """(B, C, H, W) ERP -> (B, C, 12, S, S) perspective views (bilinear)."""
    b, c, h, w = erp.shape
    grid = _grid(h, w, int(size), float(fov_deg), str(erp.device), erp.dtype).expand(b, -1, -1, -1)
    padded = torch.cat([erp[..., -1:], erp, erp[..., :1]], dim=-1)
    out = F.grid_sample(padded, grid, mode="bilinear", padding_mode="border", align_corners=False)
    return out.view(b, c, 12, size, size)


def _gram_l1(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    s = a.shape[-1]
    rows = (a @ a.transpose(-1, -2) - b @ b.transpose(-1, -2)).abs().mean(dim=(-1, -2))
    cols = (a.transpose(-1, -2) @ a - b.transpose(-1, -2) @ b).abs().mean(dim=(-1, -2))
    return (rows + cols) / (2.0 * s)


def depth_fidelity(pred: torch.Tensor, target: torch.Tensor, valid: torch.Tensor,
                   view_size: int | None = None, fov_deg: float = FOV_DEG) -> torch.Tensor:
    """L_DF between (B, 1, H, W) depths; ``view_size`` defaults to max(8, H // 4)."""
    pred, target = as_float(pred), as_float(target)
    h = pred.shape[-2]
    size = int(view_size) if view_size is not None else max(8, h // 4)
    vf = valid.to(pred.dtype)
    t = torch.where(valid, target, torch.zeros_like(target))
    stacked = sample_views(torch.cat([pred, t, vf], dim=1), size, fov_deg)  # (B, 3, 12, S, S)
    vp, vt, vm = stacked[:, 0], stacked[:, 1], stacked[:, 2] > 1.0 - 1e-4
    vp = torch.where(vm, vp, torch.zeros_like(vp))
    vt = torch.where(vm, vt, torch.zeros_like(vt))
    with torch.no_grad():
        count = vm.flatten(2).sum(-1)
        scale = vt.flatten(2).sum(-1) / count.clamp_min(1)
        scale = torch.where(count > 0, scale, torch.ones_like(scale)).clamp_min(1e-6)
    vp = vp / scale[..., None, None]
    vt = vt / scale[..., None, None]
    per_view = _gram_l1(vp, vt)  # (B, 12)
    return per_view.mean()
