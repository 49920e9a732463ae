"""DINOv3 vision transformer, inference-first: static shapes, RoPE tables cached per grid, SDPA.

Parameter names follow the official module (``patch_embed.proj``, ``blocks.N.attn.qkv``,
``storage_tokens``, ...) so that checkpoints map onto it by a prefix change alone.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from dap_ros.config import ModelConfig
from dap_ros.model.layers import RopeEmbedding, TransformerBlock


class PatchEmbed(nn.Module):
    def __init__(self, patch_size: int, dim: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(3, dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: Tensor) -> Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)  # (B, h*w, C), row-major patches


class DinoVisionTransformer(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.patch_size = cfg.patch_size
        self.n_prefix_tokens = 1 + cfg.n_storage_tokens
        dim = cfg.embed_dim
        self.patch_embed = PatchEmbed(cfg.patch_size, dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.storage_tokens = nn.Parameter(torch.zeros(1, cfg.n_storage_tokens, dim))
        # Only used for masked-image pretraining; kept so checkpoints load with no leftovers.
        self.mask_token = nn.Parameter(torch.zeros(1, dim))
        self.rope_embed = RopeEmbedding(cfg.head_dim, cfg.rope_base, cfg.rope_normalize_coords)
        self.blocks = nn.ModuleList(
            TransformerBlock(
                dim,
                cfg.num_heads,
                ffn_ratio=cfg.ffn_ratio,
                layerscale=cfg.layerscale,
                mask_k_bias=cfg.mask_k_bias,
                norm_eps=cfg.norm_eps,
            )
            for _ in range(cfg.depth)
        )
        self.norm = nn.LayerNorm(dim, eps=cfg.norm_eps)
        self.gradient_checkpointing = False
        self._init_weights()

    def _init_weights(self) -> None:
        nn.init.normal_(self.cls_token, std=0.02)
        nn.init.normal_(self.storage_tokens, std=0.02)
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.trunc_normal_(module.weight, std=0.02)
                nn.init.zeros_(module.bias)

    def intermediate_patch_tokens(self, x: Tensor, layers: tuple[int, ...]) -> list[Tensor]:
        """Patch tokens (B, h*w, C) after each block in ``layers``, through the final norm, with
        the CLS and storage tokens dropped (DINOv3 ``get_intermediate_layers(norm=True)``)."""
        h, w = x.shape[-2] // self.patch_size, x.shape[-1] // self.patch_size
        tokens = self.patch_embed(x)
        batch = tokens.shape[0]
        prefix = torch.cat((self.cls_token, self.storage_tokens), dim=1).expand(batch, -1, -1)
        tokens = torch.cat((prefix.to(tokens.dtype), tokens), dim=1)
        rope = self.rope_embed(h, w, self.n_prefix_tokens)
        wanted = set(layers)
        outputs = []
        for index, block in enumerate(self.blocks):
            if self.gradient_checkpointing and self.training:
                tokens = torch.utils.checkpoint.checkpoint(block, tokens, rope, use_reentrant=False)
            else:
                tokens = block(tokens, rope)
            if index in wanted:
                outputs.append(self.norm(tokens)[:, self.n_prefix_tokens :])
            if index >= max(layers):
                break
        return outputs
