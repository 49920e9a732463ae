"""Network output -> metric range image and range mask at the output size.

Semantics (docs/conventions.md, REP 117): finite metres where in range, +Inf where the range mask
says "beyond range / sky" (or the range exceeds ``max_range``), NaN where the network produced a
non-finite value.

Resizing to the output size never blends across the out-of-range boundary: the range and an
"in range" weight are resized bilinearly together and divided (normalized interpolation), so
only in-range neighbours contribute to a pixel's range; a pixel is in range where the resized
weight is at least one half. Inside smooth regions this equals plain bilinear interpolation.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from dap_ros.settings import DEPTH_SCALE_M


def postprocess(
    pred_depth: torch.Tensor,
    pred_mask: torch.Tensor,
    output_size: tuple[int, int],
    mask_threshold: float = 0.5,
    max_range: float = DEPTH_SCALE_M,
    out: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(1, 1, h, w) network outputs -> (range_m float32 (H, W), in_range bool (H, W)).

    The official rule: a pixel is valid where (1 - pred_mask) > mask_threshold. ``out``: a
    float32 (H, W) tensor the range is written into (e.g. a message's payload); it is returned.
    """
    range_m = pred_depth[0, 0].float() * DEPTH_SCALE_M
    finite = torch.isfinite(range_m)
    in_range = ((1.0 - pred_mask[0, 0].float()) > mask_threshold) & finite & (range_m <= max_range)
    all_finite = bool(finite.all())
    direct = out if out is not None and out.device == range_m.device else None  # else copied at the end
    if tuple(range_m.shape) != tuple(output_size):
        # Decisions are taken on the small network grid; full-size passes are kept to a minimum.
        if bool(in_range.all()):  # common indoors: plain bilinear, everything in range
            range_m = _bilinear(range_m[None, None], output_size, direct)[0, 0]
            return _into(range_m, out), torch.ones_like(range_m, dtype=torch.bool)
        stack = torch.stack((torch.where(in_range, range_m, 0.0), in_range.float()))[None]
        weighted, weight = _bilinear(stack, output_size)[0].unbind(0)
        in_range = weight >= 0.5
        range_m = weighted.div_(weight)  # where weight < 0.5 this is replaced by +Inf below
        if not all_finite:
            finite = F.interpolate(finite.float()[None, None], size=output_size, mode="nearest")[0, 0] > 0.5
            in_range &= finite
    beyond = torch.tensor(torch.inf, dtype=range_m.dtype, device=range_m.device)  # where(out=) wants tensors
    result = torch.where(in_range, range_m, beyond, out=direct)
    if not all_finite:
        result.masked_fill_(~finite, torch.nan)
    return _into(result, out), in_range


def _bilinear(x: torch.Tensor, size: tuple[int, int], out: torch.Tensor | None = None) -> torch.Tensor:
    if out is None:
        return F.interpolate(x, size=size, mode="bilinear", align_corners=False)
    # F.interpolate's own kernel (scales None: derived from the sizes), writing into ``out``
    return torch.ops.aten.upsample_bilinear2d.out(x, list(size), False, None, None, out=out.view(1, 1, *size))


def _into(result: torch.Tensor, out: torch.Tensor | None) -> torch.Tensor:
    if out is None or result.data_ptr() == out.data_ptr():
        return result
    return out.copy_(result)
