"""DAP training losses (training/DATA_AND_LOSSES.md): each loss is a standalone function, DAPLoss
combines them with the paper's weights and the ERP distortion map."""
from training.losses.common import distortion_weight
from training.losses.dap_loss import DEFAULT_WEIGHTS, DAPLoss
from training.losses.depth_fidelity import depth_fidelity
from training.losses.gradient import edge_mask, gradient_silog
from training.losses.mask import mask_loss
from training.losses.normal import normal_loss
from training.losses.points import points_loss
from training.losses.silog import silog

__all__ = [
    "DAPLoss",
    "DEFAULT_WEIGHTS",
    "depth_fidelity",
    "distortion_weight",
    "edge_mask",
    "gradient_silog",
    "mask_loss",
    "normal_loss",
    "points_loss",
    "silog",
]
