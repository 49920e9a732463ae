"""Multi-head self-attention with RoPE and DINOv3's masked key bias, on scaled_dot_product_attention."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dap_ros.model.layers.rope import apply_rope


class QKVLinear(nn.Linear):
    """The qkv projection. DINOv3 trains with the key third of the bias masked to zero; the mask is a
    checkpoint buffer (``bias_mask``) so that loading reproduces exactly what was trained."""

    def __init__(self, dim: int, mask_k_bias: bool) -> None:
        super().__init__(dim, 3 * dim, bias=True)
        if mask_k_bias:
            mask = torch.ones(3 * dim)
            mask[dim : 2 * dim] = 0.0
            self.register_buffer("bias_mask", mask, persistent=True)
        else:
            self.bias_mask = None

    def forward(self, x: Tensor) -> Tensor:
        bias = self.bias if self.bias_mask is None else self.bias * self.bias_mask.to(self.bias.dtype)
        return F.linear(x, self.weight, bias)


class SelfAttention(nn.Module):
    def __init__(self, dim: int, num_heads: int, mask_k_bias: bool = True) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.qkv = QKVLinear(dim, mask_k_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor, rope: tuple[Tensor, Tensor] | None = None) -> Tensor:
        batch, tokens, dim = x.shape
        qkv = self.qkv(x).reshape(batch, tokens, 3, self.num_heads, dim // self.num_heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each (B, heads, N, head_dim)
        if rope is not None:
            sin, cos = rope
            # RoPE runs in float32 (as trained) whatever the compute precision, then casts back.
            q = apply_rope(q.float(), sin, cos).to(v.dtype)
            k = apply_rope(k.float(), sin, cos).to(v.dtype)
        out = F.scaled_dot_product_attention(q, k, v)
        return self.proj(out.transpose(1, 2).reshape(batch, tokens, dim))
