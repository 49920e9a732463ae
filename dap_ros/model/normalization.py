"""The network's input convention: RGB in [0, 1], then normalized (ImageNet mean/std by default).

Folded into one multiply-add on the uint8 image, ``x = pixel * scale + shift``, used by the
predictor's pre-processing and by the uint8-input ONNX graph alike.
"""
from __future__ import annotations

import torch

from dap_ros.settings import IMAGENET_MEAN, IMAGENET_STD, NORMALIZATIONS, check, choice_problem


def input_affine(normalization: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(scale, shift), each float32 (1, 3, 1, 1), such that ``uint8 * scale + shift`` is the network input."""
    check("normalization", normalization, choice_problem(normalization, NORMALIZATIONS))
    mean = torch.tensor(IMAGENET_MEAN if normalization == "imagenet" else (0.0, 0.0, 0.0))
    std = torch.tensor(IMAGENET_STD if normalization == "imagenet" else (1.0, 1.0, 1.0))
    return (1.0 / (255.0 * std)).view(1, 3, 1, 1), (-mean / std).view(1, 3, 1, 1)
