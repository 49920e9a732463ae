"""Image -> network input: resize to the network size, scale to [0, 1], normalize.

Resizing uses bilinear interpolation with antialiasing (area-like averaging when shrinking a
1920x960 or 4K panorama to 1024x512, plain bilinear when enlarging). It runs in torch on the
predictor's device, so the GPU path uploads only the uint8 image.
"""
from __future__ import annotations

import warnings

import numpy as np
import torch
import torch.nn.functional as F

from dap_ros.errors import ConfigError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
NORMALIZATIONS = ("imagenet", "none")


def resize_chw(image: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Resize a float (B, C, H, W) tensor with antialiased bilinear interpolation."""
    if tuple(image.shape[-2:]) == tuple(size):
        return image
    return F.interpolate(image, size=size, mode="bilinear", align_corners=False, antialias=True)


class Preprocessor:
    """uint8 (H, W, 3) RGB -> normalized float (1, 3, h, w) on ``device`` in ``dtype``."""

    def __init__(self, input_size: tuple[int, int], normalization: str, device: torch.device, dtype: torch.dtype):
        if normalization not in NORMALIZATIONS:
            raise ConfigError(f"normalization must be one of {NORMALIZATIONS}, got {normalization!r}")
        self.input_size = input_size
        self.normalization = normalization
        self.device = device
        self.dtype = dtype
        mean = torch.tensor(IMAGENET_MEAN if normalization == "imagenet" else (0.0, 0.0, 0.0))
        std = torch.tensor(IMAGENET_STD if normalization == "imagenet" else (1.0, 1.0, 1.0))
        # Fold /255 and the normalization into one multiply-add: x * scale + shift.
        self._scale = (1.0 / (255.0 * std)).view(1, 3, 1, 1).to(device)
        self._shift = (-mean / std).view(1, 3, 1, 1).to(device)

    def __call__(self, rgb: np.ndarray) -> torch.Tensor:
        with warnings.catch_warnings():  # ROS buffers are read-only; torch only reads them here
            warnings.simplefilter("ignore", UserWarning)
            image = torch.from_numpy(np.ascontiguousarray(rgb)).to(self.device, non_blocking=True)
        image = image.permute(2, 0, 1).unsqueeze(0).float()
        image = resize_chw(image, self.input_size)
        return (image * self._scale + self._shift).to(self.dtype)
