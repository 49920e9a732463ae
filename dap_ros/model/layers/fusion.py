"""DPT fusion layers (RefineNet-style), as in Depth-Anything-V2: no batch norm."""
from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn


class ResidualConvUnit(nn.Module):
    """x + conv(relu(conv(relu(x))))."""

    def __init__(self, features: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(features, features, 3, padding=1)
        self.conv2 = nn.Conv2d(features, features, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.conv2(F.relu(self.conv1(F.relu(x))))


class FusionBlock(nn.Module):
    """Adds a refined skip feature, refines the sum, upsamples (bilinear, align_corners=True), 1x1 conv.

    The deepest block gets no skip input, but keeps ``skip_unit`` so that the released checkpoint
    (which has those weights) loads with no unexpected tensors.
    """

    def __init__(self, features: int) -> None:
        super().__init__()
        self.skip_unit = ResidualConvUnit(features)
        self.residual_unit = ResidualConvUnit(features)
        self.out_conv = nn.Conv2d(features, features, 1)

    def forward(self, x: Tensor, skip: Tensor | None, size: tuple[int, int]) -> Tensor:
        if skip is not None:
            x = x + self.skip_unit(skip)
        x = self.residual_unit(x)
        x = F.interpolate(x, size=size, mode="bilinear", align_corners=True)
        return self.out_conv(x)
