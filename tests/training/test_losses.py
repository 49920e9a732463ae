"""Losses: analytic answers, masking, finite gradients, DAPLoss weights and parts."""
from __future__ import annotations

import math

import pytest
import torch

from training.losses import (
    DEFAULT_WEIGHTS,
    DAPLoss,
    depth_fidelity,
    distortion_weight,
    edge_mask,
    gradient_silog,
    mask_loss,
    normal_loss,
    points_loss,
    silog,
)
from training.losses.common import erp_rays
from training.losses.depth_fidelity import icosahedron_vertices, sample_views, view_rays
from training.losses.geometry import back_project, normals_from_points

H, W = 32, 64


def _scene_depth(b=2, seed=0):
    """A box-room-like depth (official units) with a step edge, plus an invalid patch."""
    g = torch.Generator().manual_seed(seed)
    rays = erp_rays(H, W)[0]
    # room 6 x 4 x 3 m, camera at (2, 1.5, 1.2): exact exit distances
    o = torch.tensor([2.0, 1.5, 1.2]).view(3, 1, 1)
    hi = torch.tensor([4.0, 2.5, 1.8]).view(3, 1, 1)
    lo = -o
    bound = torch.where(rays > 0, hi, lo)
    t = (bound / torch.where(rays.abs() < 1e-9, torch.full_like(rays, 1e-9), rays)).amin(0)
    depth = (t / 100.0).expand(b, 1, H, W).clone()
    depth[:, :, 10:16, 20:30] *= 0.6  # an object in front: step edges
    depth = depth * (1 + 0.01 * torch.rand(depth.shape, generator=g))
    valid = torch.ones_like(depth, dtype=torch.bool)
    valid[:, :, 2:5, 40:50] = False
    return depth, valid


ALL = [silog, gradient_silog, normal_loss, points_loss, lambda p, t, v, w=None: depth_fidelity(p, t, v)]


@pytest.mark.parametrize("fn", ALL)
def test_identical_inputs_give_zero(fn):
    d, v = _scene_depth()
    assert fn(d, d, v, distortion_weight(H, W)).item() == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize("k", [0.5, 1.25, 2.0])
def test_silog_known_scale_error(k):
    d, v = _scene_depth()
    lam = 0.85
    expected = math.sqrt((1 - lam) * math.log(k) ** 2 + 1e-8) - 1e-4
    for w in (None, distortion_weight(H, W)):
        assert silog(d * k, d, v, w).item() == pytest.approx(expected, rel=1e-4)
    # SILog is scale-invariant up to the (1 - lambda) term: with lambda = 1 a scale error costs nothing
    assert silog(d * k, d, v, lam=1.0).item() == pytest.approx(0.0, abs=1e-3)


def test_points_loss_known_offset():
    d, v = _scene_depth(1)
    delta = 0.01
    rays = erp_rays(H, W)[0]
    w = distortion_weight(H, W)
    per_pixel = delta * rays.abs().sum(0)
    m = v[0, 0].float() * w[0, 0]
    expected = (per_pixel * m).sum() / m.sum()
    assert points_loss(d + delta, d, v, w).item() == pytest.approx(expected.item(), rel=1e-5)


def test_plane_has_constant_normals():
    """Range to the floor plane z = -1.5 m: every pixel below the horizon has normal (0, 0, ±1)."""
    rays = erp_rays(H, W)[0]
    below = rays[2] < -0.05
    rng = torch.where(below, 1.5 / (-rays[2]).clamp_min(1e-6), torch.full_like(rays[2], 50.0))
    n = normals_from_points(back_project(rng.view(1, 1, H, W)))[0]
    inner = below.clone()
    inner[:-1] &= below[1:]
    inner[1:] &= below[:-1]  # all vertical neighbours on the plane too
    nz = n[2][inner]
    assert torch.allclose(nz.abs(), torch.ones_like(nz), atol=1e-5)
    assert (nz.sign() == nz.sign()[0]).all()
    assert n[:2][:, inner].abs().max() < 1e-3
    # and a plane is its own perfect prediction even scaled: normals do not change with scale
    d = rng.view(1, 1, H, W) / 100
    v = inner.view(1, 1, H, W)
    assert normal_loss(d * 1.7, d, v).item() == pytest.approx(0.0, abs=1e-5)


@pytest.mark.parametrize("fn", ALL)
def test_masked_pixels_never_contribute(fn):
    d, v = _scene_depth()
    g = torch.Generator().manual_seed(3)
    pred = d * (1 + 0.2 * torch.rand(d.shape, generator=g))
    base = fn(pred, d, v)
    t2 = d.clone()
    t2[~v] = torch.rand(int((~v).sum()), generator=g) * 5 + 1e-3
    t3 = d.clone()
    t3[~v] = float("nan")
    for t in (t2, t3):
        assert fn(pred, t, v).item() == pytest.approx(base.item(), rel=1e-6, abs=1e-9)


def test_mask_loss_values_and_masking():
    b = torch.zeros(1, 1, H, W)
    b[:, :, :8] = 1.0
    known = torch.ones_like(b, dtype=torch.bool)
    assert mask_loss(b, b, known).item() == pytest.approx(0.0, abs=1e-7)
    assert mask_loss(torch.zeros_like(b), torch.zeros_like(b), known).item() == pytest.approx(0.0, abs=1e-7)
    # all wrong (p = 1 - b): MSE 1, Dice = 1 - s / (N + s)
    n = H * W
    assert mask_loss(1 - b, b, known).item() == pytest.approx(1.0 + 0.5 * (1 - 1 / (n + 1)), rel=1e-5)
    # unknown pixels never count
    known2 = known.clone()
    known2[:, :, 20:] = False
    p = torch.rand_like(b)
    p2 = p.clone()
    p2[~known2] = 0.123
    b2 = b.clone()
    b2[~known2] = 1.0
    assert mask_loss(p, b, known2).item() == pytest.approx(mask_loss(p2, b2, known2).item(), rel=1e-6)


def _finite_grad(fn, pred, *args):
    pred = pred.clone().requires_grad_(True)
    loss = fn(pred, *args)
    loss.backward()
    assert torch.isfinite(loss)
    assert torch.isfinite(pred.grad).all()
    return pred.grad


@pytest.mark.parametrize("fn", ALL)
def test_gradients_finite_at_poles_and_invalid_pixels(fn):
    d, v = _scene_depth()
    v[:, :, 0] = True  # pole rows in use
    v[:, :, -1] = True
    t = d.clone()
    t[~v] = float("nan")  # garbage under the mask
    pred = d * 1.1
    pred[:, :, 0] = 1e-7  # extreme values at the poles
    grad = _finite_grad(fn, pred, t, v)
    # identical inputs too (sqrt at 0 in SILog)
    _finite_grad(fn, d, d, v)
    if fn is points_loss or fn is silog:
        assert (grad[~v] == 0).all()


def test_mask_loss_gradients_finite():
    b = (torch.rand(2, 1, H, W) > 0.7).float()
    known = torch.rand(2, 1, H, W) > 0.2
    b[~known] = float("nan")
    _finite_grad(mask_loss, torch.rand(2, 1, H, W), b, known, distortion_weight(H, W))


def test_empty_masks_give_zero_with_graph():
    d, v = _scene_depth()
    none = torch.zeros_like(v)
    for fn in ALL:
        p = d.clone().requires_grad_(True)
        out = fn(p, d, none)
        assert out.item() == 0.0
        out.backward()


def test_distortion_weight_is_cos_latitude():
    w = distortion_weight(4, 8)
    lat = torch.tensor([67.5, 22.5, -22.5, -67.5]) * math.pi / 180
    assert w.shape == (1, 1, 4, 8)
    assert torch.allclose(w[0, 0, :, 3], torch.cos(lat))
    assert (distortion_weight(512, 1024) > 0).all()


def test_edge_mask_finds_steps_only():
    d = torch.full((1, 1, H, W), 0.05)
    d[:, :, 10:16, 20:30] = 0.03
    valid = torch.ones_like(d, dtype=torch.bool)
    e = edge_mask(d, valid)[0, 0]
    ring = torch.zeros(H, W, dtype=torch.bool)
    ring[9:17, 19:31] = True
    ring[11:15, 21:29] = False  # one pixel either side of the step
    assert torch.equal(e, ring)
    flat = torch.full((1, 1, H, W), 0.05)
    assert not edge_mask(flat, valid).any()
    assert not edge_mask(d * 3.0, valid)[0, 0].logical_xor(e).any()  # scale-invariant (log depth)
    holes = valid.clone()
    holes[:, :, 12, 25] = False
    assert not edge_mask(d, holes)[0, 0, 11:14, 24:27].any()  # no edge next to an invalid pixel


def test_depth_fidelity_views():
    v = icosahedron_vertices()
    assert v.shape == (12, 3) and torch.allclose(v.norm(dim=1), torch.ones(12, dtype=torch.float64))
    r = view_rays(9)
    assert torch.allclose(r[:, 4, 4], v, atol=1e-12)  # the centre pixel looks at the vertex
    # every direction of the sphere is inside some 90-degree view: max angle to nearest vertex < 45 deg
    dirs = erp_rays(64, 128)[0].reshape(3, -1).double()
    assert torch.arccos((v @ dirs).amax(0).clamp(max=1)).max() < math.radians(38)
    # sampling a constant ERP gives the constant; sampling the ray field gives the view rays
    rays = erp_rays(64, 128)
    views = sample_views(rays, 16)[0]  # (3, 12, 16, 16)
    vr = view_rays(16).permute(3, 0, 1, 2).float()
    assert (views - vr).norm(dim=0).max() < 0.06
    # a scale error k changes the Gram matrices by k^2
    d, valid = _scene_depth(1)
    l2 = depth_fidelity(d * 2, d, valid).item()
    l3 = depth_fidelity(d * 3, d, valid).item()
    assert l3 / l2 == pytest.approx((9 - 1) / (4 - 1), rel=1e-3)


def test_dap_loss_weights_and_parts():
    d, v = _scene_depth()
    beyond = torch.zeros_like(d)
    beyond[:, :, :3] = 1.0
    v = v & (beyond < 0.5)
    batch = {"depth": d, "valid": v, "beyond": beyond}
    pred_d = (d * 1.3).requires_grad_(True)
    pred_m = torch.full_like(d, 0.4, requires_grad=True)
    total, parts = DAPLoss()({"pred_depth": pred_d, "pred_mask": pred_m}, batch)
    assert set(parts) == set(DEFAULT_WEIGHTS) == {"silog", "df", "grad", "normal", "pts", "mask"}
    assert DEFAULT_WEIGHTS == {"silog": 1.0, "df": 0.4, "grad": 5.0, "normal": 2.0, "pts": 2.0, "mask": 2.0}
    expected = sum(DEFAULT_WEIGHTS[k] * parts[k] for k in parts)
    assert total.item() == pytest.approx(expected.item(), rel=1e-5)
    assert all(not p.requires_grad for p in parts.values())
    total.backward()
    assert torch.isfinite(pred_d.grad).all() and torch.isfinite(pred_m.grad).all()
    only = DAPLoss({"silog": 2.0, "df": 0, "grad": 0, "normal": 0, "pts": 0, "mask": 0})
    t2, p2 = only({"pred_depth": pred_d, "pred_mask": pred_m}, batch)
    assert t2.item() == pytest.approx(2.0 * parts["silog"].item(), rel=1e-5)
    assert p2["df"].item() == 0.0
    perfect, _ = DAPLoss()({"pred_depth": d, "pred_mask": beyond}, batch)
    assert perfect.item() == pytest.approx(0.0, abs=1e-5)
    with pytest.raises(ValueError, match="unknown loss"):
        DAPLoss({"ssim": 1.0})
    # silog_lambda: a pure scale error (pred = 1.3 x truth) costs more the lower lambda is, and
    # nothing at lambda 1 (fully scale-invariant)
    scaled = {"pred_depth": d * 1.3, "pred_mask": beyond}
    silog_only = {"df": 0, "grad": 0, "normal": 0, "pts": 0, "mask": 0}
    costs = [DAPLoss(silog_only, silog_lambda=lam)(scaled, batch)[0].item() for lam in (0.0, 0.5, 0.85, 1.0)]
    assert costs[0] > costs[1] > costs[2] > costs[3] and costs[3] == pytest.approx(0.0, abs=1e-4)
    assert costs[0] == pytest.approx(math.log(1.3), rel=1e-3)  # RMSE of log depth
    # bf16 predictions (AMP) are accepted
    t3, _ = DAPLoss()({"pred_depth": pred_d.detach().bfloat16(), "pred_mask": pred_m.detach().bfloat16()}, batch)
    assert torch.isfinite(t3)
