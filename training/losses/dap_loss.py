"""DAPLoss: the paper's weighted sum of the six losses, with the ERP distortion map.

    total = 1.0 SILog + 0.4 L_DF + 5.0 L_grad + 2.0 L_normal + 2.0 L_pts + 2.0 L_mask

M_distort = cos(latitude) weights the per-pixel losses (SILog, L_grad, L_normal, L_pts, L_mask)
inside their weighted means; L_DF works on perspective views and is not weighted.
"""
from __future__ import annotations

import torch

from training.losses.common import distortion_weight
from training.losses.depth_fidelity import depth_fidelity
from training.losses.gradient import gradient_silog
from training.losses.mask import mask_loss
from training.losses.normal import normal_loss
from training.losses.points import points_loss
from training.losses.silog import LAMBDA as SILOG_LAMBDA
from training.losses.silog import silog

DEFAULT_WEIGHTS = {"silog": 1.0, "df": 0.4, "grad": 5.0, "normal": 2.0, "pts": 2.0, "mask": 2.0}


class DAPLoss:
    """``DAPLoss(weights)(pred, batch) -> (total, parts)``.

    ``pred``: dict(pred_depth (B, 1, H, W), pred_mask (B, 1, H, W)); ``batch``: the collated sample
    dict (depth, valid, beyond). ``weights`` overrides any of DEFAULT_WEIGHTS (unknown names are an
    error); a loss whose weight is 0 is not computed and reported as 0. ``parts`` holds the
    unweighted value of each loss (detached float tensors). ``distortion=False`` disables M_distort;
    ``silog_lambda`` is the SILog term's lambda (L_grad keeps the paper's).
    """

    def __init__(self, weights: dict | None = None, distortion: bool = True, df_view_size: int | None = None,
                 silog_lambda: float = SILOG_LAMBDA):
        w = dict(DEFAULT_WEIGHTS)
        if weights:
            unknown = set(weights) - set(DEFAULT_WEIGHTS)
            if unknown:
                raise ValueError(f"unknown loss names {sorted(unknown)}; known: {sorted(DEFAULT_WEIGHTS)}")
            w.update({k: float(v) for k, v in weights.items()})
        self.weights = w
        self.distortion = bool(distortion)
        self.df_view_size = df_view_size
        self.silog_lambda = float(silog_lambda)

    def __call__(self, pred: dict, batch: dict) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        depth_p = pred["pred_depth"].float()
        mask_p = pred["pred_mask"].float()
        target = batch["depth"].to(depth_p.device, torch.float32)
        valid = batch["valid"].to(depth_p.device, torch.bool)
        beyond = batch["beyond"].to(depth_p.device, torch.float32)
        h, w = depth_p.shape[-2:]
        if target.shape[-2:] != (h, w):
            raise ValueError(f"prediction is {h}x{w} but the ground truth is {tuple(target.shape[-2:])}")
        wmap = distortion_weight(h, w, depth_p.device) if self.distortion else None
        fns = {
            "silog": lambda: silog(depth_p, target, valid, wmap, lam=self.silog_lambda),
            "df": lambda: depth_fidelity(depth_p, target, valid, self.df_view_size),
            "grad": lambda: gradient_silog(depth_p, target, valid, wmap),
            "normal": lambda: normal_loss(depth_p, target, valid, wmap),
            "pts": lambda: points_loss(depth_p, target, valid, wmap),
            "mask": lambda: mask_loss(mask_p, beyond, valid | (beyond > 0.5), wmap),
        }
        total = depth_p.sum() * 0.0 + mask_p.sum() * 0.0
        parts: dict[str, torch.Tensor] = {}
        for name, fn in fns.items():
            weight = self.weights[name]
            if weight == 0.0:
                parts[name] = torch.zeros((), device=depth_p.device)
                continue
            value = fn()
            parts[name] = value.detach()
            total = total + weight * value
        return total, parts
