"""DPT head (Depth-Anything-V2 shape): four ViT feature maps -> one sigmoid map at full resolution."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dap_ros.model.layers import FusionBlock


class DPTHead(nn.Module):
    """Reassemble (1x1 projection + resampling to strides 4, 8, 16, 32), fuse coarse-to-fine, predict.

    Resampling per level: ConvTranspose 4/s4, ConvTranspose 2/s2, identity, Conv 3x3/s2.
    """

    def __init__(self, in_channels: int, features: int, out_channels: tuple[int, ...], patch_size: int) -> None:
        super().__init__()
        self.patch_size = patch_size
        self.projections = nn.ModuleList(nn.Conv2d(in_channels, c, 1) for c in out_channels)
        self.resamplers = nn.ModuleList(
            [
                nn.ConvTranspose2d(out_channels[0], out_channels[0], 4, stride=4),
                nn.ConvTranspose2d(out_channels[1], out_channels[1], 2, stride=2),
                nn.Identity(),
                nn.Conv2d(out_channels[3], out_channels[3], 3, stride=2, padding=1),
            ]
        )
        self.layer_convs = nn.ModuleList(nn.Conv2d(c, features, 3, padding=1, bias=False) for c in out_channels)
        self.fusions = nn.ModuleList(FusionBlock(features) for _ in out_channels)
        self.output_conv1 = nn.Conv2d(features, features // 2, 3, padding=1)
        self.output_conv2 = nn.Conv2d(features // 2, 32, 3, padding=1)
        self.output_conv3 = nn.Conv2d(32, 1, 1)

    def forward(self, features: list[Tensor]) -> Tensor:
        h, w = features[0].shape[-2:]
        levels = [
            conv(resample(project(f)))
            for f, project, resample, conv in zip(features, self.projections, self.resamplers, self.layer_convs)
        ]
        # Coarse to fine: each fusion output is resized to the next finer level (the finest doubles).
        sizes = [(8 * h, 8 * w), (4 * h, 4 * w), (2 * h, 2 * w), (h, w)]
        path = None
        for level in (3, 2, 1, 0):
            if path is None:
                path = self.fusions[level](levels[level], None, sizes[level])
            else:
                path = self.fusions[level](path, levels[level], sizes[level])
        out = self.output_conv1(path)
        out = F.interpolate(out, size=(h * self.patch_size, w * self.patch_size), mode="bilinear", align_corners=True)
        out = self.output_conv3(F.relu(self.output_conv2(out)))
        return torch.sigmoid(out)
