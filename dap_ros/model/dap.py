"""The DAP network: DINOv3 backbone -> feature adapter -> depth head and range-mask head."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dap_ros.config import ModelConfig
from dap_ros.model.backbone import DinoVisionTransformer
from dap_ros.model.dpt import DPTHead


def _token_resample_table(n_in: int, n_out: int) -> tuple[Tensor, Tensor, Tensor]:
    """Indices and weights of a 1-D linear resampling n_in -> n_out with align_corners=False,
    the arithmetic of ``F.interpolate(mode='bilinear')`` along one axis."""
    scale = n_in / n_out
    src = ((torch.arange(n_out, dtype=torch.float64) + 0.5) * scale - 0.5).clamp(min=0.0)
    lo = src.floor().long().clamp(max=n_in - 1)
    hi = (lo + 1).clamp(max=n_in - 1)
    frac = (src - lo.double()).float()
    return lo, hi, frac


class FeatureAdapter(nn.Module):
    """Turns the backbone's patch tokens into the (B, C, h, w) maps the DPT heads read.

    Reproduces a quirk of the official adapter that the released weights were trained with: after
    its extra LayerNorm it drops the first *patch* token, leaving h*w-1 tokens, and stretches that
    sequence back to h*w tokens with 1-D linear interpolation (align_corners=False) before the
    reshape. So feature (r, c) is a blend of tokens near r*w+c+1 rather than token r*w+c itself.
    If h*w-1 happens to be a perfect square s*s, the official code instead reshapes to (s, s) and
    resizes bilinearly to (h, w); that branch is reproduced too.
    The 1-D resampling is done as a gather + lerp with cached indices: exact, and a plain graph.
    """

    def __init__(self, dim: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim, eps=eps)
        self._tables: dict[tuple, tuple[Tensor, Tensor, Tensor]] = {}

    def _table(self, n_in: int, n_out: int, device: torch.device) -> tuple[Tensor, Tensor, Tensor]:
        key = (n_in, n_out, device)
        if key not in self._tables:
            self._tables[key] = tuple(t.to(device) for t in _token_resample_table(n_in, n_out))
        return self._tables[key]

    def forward(self, tokens: Tensor, h: int, w: int) -> Tensor:
        tokens = self.norm(tokens)[:, 1:]  # (B, h*w - 1, C): the quirk
        batch, n, channels = tokens.shape
        side = math.isqrt(n)
        if side * side == n:
            grid = tokens.transpose(1, 2).reshape(batch, channels, side, side)
            return F.interpolate(grid, size=(h, w), mode="bilinear", align_corners=False)
        lo, hi, frac = self._table(n, h * w, tokens.device)
        frac = frac.to(tokens.dtype)[None, :, None]
        tokens = tokens[:, lo] * (1 - frac) + tokens[:, hi] * frac  # (B, h*w, C)
        return tokens.transpose(1, 2).reshape(batch, channels, h, w)


class DAP(nn.Module):
    """Depth Any Panoramas. ``forward(x)`` takes a normalized (B, 3, H, W) image, H and W multiples
    of the patch size, and returns ``pred_depth`` (range / 100 m, in (0, 1)) and ``pred_mask``
    (probability of "beyond range"), each (B, 1, H, W): the official output dict."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.config = cfg
        self.backbone = DinoVisionTransformer(cfg)
        self.adapter = FeatureAdapter(cfg.embed_dim, eps=1e-5)
        self.depth_head = DPTHead(cfg.embed_dim, cfg.head_features, cfg.head_out_channels, cfg.patch_size)
        self.mask_head = DPTHead(cfg.embed_dim, cfg.head_features, cfg.head_out_channels, cfg.patch_size)

    def _check_input(self, x: Tensor) -> None:
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"DAP expects a (B, 3, H, W) tensor, got shape {tuple(x.shape)}")
        p = self.config.patch_size
        if x.shape[-2] % p or x.shape[-1] % p:
            raise ValueError(f"DAP input height and width must be multiples of {p}, got {tuple(x.shape[-2:])}")

    def extract_features(self, x: Tensor) -> list[Tensor]:
        """The four (B, C, h, w) maps handed to both heads."""
        self._check_input(x)
        h, w = x.shape[-2] // self.config.patch_size, x.shape[-1] // self.config.patch_size
        tokens = self.backbone.intermediate_patch_tokens(x, self.config.intermediate_layers)
        return [self.adapter(t, h, w) for t in tokens]

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        features = self.extract_features(x)
        depth = self.depth_head(features) * self.config.max_depth
        return {"pred_depth": depth, "pred_mask": self.mask_head(features)}
