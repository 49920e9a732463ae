"""Mixed precision for strongly typed TensorRT builds: fp16 compute with fp32 islands.

TensorRT 11 builds only strongly typed networks (and TensorRT 10 can: ``STRONGLY_TYPED``), so the
precision of every tensor must be written into the ONNX graph itself. Rather than rewriting a
float32 graph node by node, we export a network whose modules already compute in the intended
types; the exporter then writes exactly those types and the ``Cast`` nodes between them.

The recipe (what stays float32 and why):

- the transformer's residual stream: the patch embedding is cast to fp32, LayerScale's ``gamma`` is
  fp32, so ``x + gamma * branch(x)`` is an fp32 sum (branch outputs are fp16);
- every LayerNorm: fp32 input, fp32 weights, fp32 statistics; its output is cast to fp16 for the
  matrix multiplications that follow (or kept fp32 where another LayerNorm reads it);
- RoPE: q and k are rotated in fp32 with fp32 sin/cos tables (baked constants), the 1/sqrt(d)
  scale is applied in fp32 too, then cast to fp16;
- attention scores: Q K^T is an fp16 GEMM (fp32 accumulation on tensor cores), its result is cast
  to fp32 for the softmax, and the probabilities go back to fp16 for the product with V;
- the final 32 -> 1 convolution and the Sigmoid of both heads, and the graph outputs.

Everything else (qkv / proj / MLP linears, GELU, the DPT convolutions and their sums) is fp16.
Graph inputs and outputs stay float32, so callers never see the difference.

``fp32_heads=True`` (``export-onnx --fp16 --fp32-heads``) keeps the same backbone but computes both
DPT heads entirely in float32: projections, resampling (transposed) convolutions, fusion blocks,
resizes and output convolutions, with their inputs cast to fp32 at the head boundary; the adapter
(a LayerNorm and a token interpolation, negligible compute) then also stays fp32. Why: full-fp16
heads were reported to drift in metric scale on Jetson Orin NX (TensorRT 10.3) until the depth
head ran in fp32. Cost: the heads are 35 % of the network's FLOPs (ViT-L, 512x1024), now computed
in fp32; see benchmarks/fp32_heads.py and docs/benchmarks.md.
"""
from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dap_ros.model.layers.attention import SelfAttention
from dap_ros.model.layers.rope import apply_rope

COMPUTE_DTYPE = torch.float16


class Fp32LayerNorm(nn.Module):
    """LayerNorm computed in float32 whatever the input type; output cast to ``out_dtype``."""

    def __init__(self, norm: nn.LayerNorm, out_dtype: torch.dtype) -> None:
        super().__init__()
        self.normalized_shape = tuple(norm.normalized_shape)
        self.eps = norm.eps
        self.weight = nn.Parameter(norm.weight.detach().float().clone(), requires_grad=False)
        self.bias = nn.Parameter(norm.bias.detach().float().clone(), requires_grad=False)
        self.out_dtype = out_dtype

    def forward(self, x: Tensor) -> Tensor:
        y = F.layer_norm(x.float(), self.normalized_shape, self.weight, self.bias, self.eps)
        return y.to(self.out_dtype)


class CastIO(nn.Module):
    """Runs ``module`` with its input cast to ``in_dtype`` and its output cast to ``out_dtype``."""

    def __init__(self, module: nn.Module, in_dtype: torch.dtype, out_dtype: torch.dtype) -> None:
        super().__init__()
        self.module = module.to(in_dtype)
        self.in_dtype = in_dtype
        self.out_dtype = out_dtype

    def forward(self, x: Tensor) -> Tensor:
        return self.module(x.to(self.in_dtype)).to(self.out_dtype)


class MixedPrecisionAttention(nn.Module):
    """SelfAttention with RoPE, the scale and the softmax in fp32 and the GEMMs in fp16."""

    def __init__(self, attn: SelfAttention, dtype: torch.dtype = COMPUTE_DTYPE) -> None:
        super().__init__()
        self.num_heads = attn.num_heads
        self.qkv = attn.qkv.to(dtype)
        self.proj = attn.proj.to(dtype)
        self.dtype = dtype

    def forward(self, x: Tensor, rope: tuple[Tensor, Tensor] | None = None) -> Tensor:
        batch, tokens, dim = x.shape
        head_dim = dim // self.num_heads
        qkv = self.qkv(x.to(self.dtype)).reshape(batch, tokens, 3, self.num_heads, head_dim)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)
        q, k = q.float(), k.float()
        if rope is not None:
            sin, cos = rope
            q, k = apply_rope(q, sin.float(), cos.float()), apply_rope(k, sin.float(), cos.float())
        q = (q * head_dim**-0.5).to(self.dtype)
        scores = torch.matmul(q, k.to(self.dtype).transpose(-2, -1)).float()
        probs = torch.softmax(scores, dim=-1).to(self.dtype)
        out = torch.matmul(probs, v)
        return self.proj(out.transpose(1, 2).reshape(batch, tokens, dim))


class Fp32Head(nn.Module):
    """A DPT head computed entirely in float32: the feature maps are cast at its input."""

    def __init__(self, head: nn.Module) -> None:
        super().__init__()
        self.head = head.float()

    def forward(self, features: list[Tensor]) -> Tensor:
        return self.head([f.float() for f in features])


def mixed_precision_copy(
    model: nn.Module, dtype: torch.dtype = COMPUTE_DTYPE, *, fp32_heads: bool = False
) -> nn.Module:
    """A copy of a float32 DAP network that computes with the recipe of this module's docstring.

    ``fp32_heads``: the depth and mask heads (and the adapter feeding them) stay float32.
    The original is left untouched. Works on any device (on the CPU only for export and tests).
    """
    mp = copy.deepcopy(model).float().eval()
    backbone = mp.backbone
    backbone.patch_embed = CastIO(backbone.patch_embed, dtype, torch.float32)
    for block in backbone.blocks:
        block.norm1 = Fp32LayerNorm(block.norm1, dtype)
        block.norm2 = Fp32LayerNorm(block.norm2, dtype)
        block.attn = MixedPrecisionAttention(block.attn, dtype)
        block.mlp = block.mlp.to(dtype)
        # LayerScale gammas stay fp32: fp16 branch * fp32 gamma promotes to an fp32 residual sum.
    backbone.norm = Fp32LayerNorm(backbone.norm, torch.float32)  # read by the adapter's LayerNorm
    # The adapter's output type is the heads' input type: rounding it to fp16 only to cast it back
    # would lose precision for nothing in front of fp32 heads.
    mp.adapter.norm = Fp32LayerNorm(mp.adapter.norm, torch.float32 if fp32_heads else dtype)
    if fp32_heads:
        mp.depth_head, mp.mask_head = Fp32Head(mp.depth_head), Fp32Head(mp.mask_head)
        return mp.eval()
    for head in (mp.depth_head, mp.mask_head):
        last = head.output_conv3
        head.to(dtype)
        head.output_conv3 = CastIO(last.float(), torch.float32, torch.float32)
    return mp.eval()
