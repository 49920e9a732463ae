"""Building blocks of the DAP network: ViT layers (RoPE, attention, block) and DPT fusion layers."""
from dap_ros.model.layers.attention import SelfAttention
from dap_ros.model.layers.block import LayerScale, Mlp, TransformerBlock
from dap_ros.model.layers.fusion import FusionBlock, ResidualConvUnit
from dap_ros.model.layers.rope import RopeEmbedding, apply_rope

__all__ = [
    "FusionBlock",
    "LayerScale",
    "Mlp",
    "ResidualConvUnit",
    "RopeEmbedding",
    "SelfAttention",
    "TransformerBlock",
    "apply_rope",
]
