"""Image -> network input: resize to the network size, scale to [0, 1], normalize.

Resizing uses bilinear interpolation with antialiasing (area-like averaging when shrinking a
1920x960 or 4K panorama to 1024x512, plain bilinear when enlarging). It runs in torch on the
predictor's device, so the GPU path uploads only the uint8 image. On the CPU the resize runs on
the uint8 image itself in channels-last layout (torch's vectorized uint8 kernel, ~20x faster
than converting the full-size image to float first); the result is rounded to uint8 before
normalization, a difference of at most half a grey level.
"""
from __future__ import annotations

import warnings

import numpy as np
import torch
import torch.nn.functional as F

from dap_ros.model.normalization import input_affine


def resize_chw(image: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Resize a float (B, C, H, W) tensor with antialiased bilinear interpolation."""
    if tuple(image.shape[-2:]) == tuple(size):
        return image
    return F.interpolate(image, size=size, mode="bilinear", align_corners=False, antialias=True)


def resize_rgb_uint8(rgb: np.ndarray | torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """uint8 (H, W, 3) image -> uint8 (1, 3, h, w) tensor (channels-last memory), antialiased
    bilinear. Uses torch's uint8 kernel on the CPU and float math on other devices."""
    image = rgb if isinstance(rgb, torch.Tensor) else _as_tensor(rgb)
    image = image.permute(2, 0, 1).unsqueeze(0)  # a channels-last view, no copy
    if tuple(image.shape[-2:]) == tuple(size):
        return image
    if image.device.type == "cpu":
        return F.interpolate(image, size=size, mode="bilinear", align_corners=False, antialias=True)
    resized = resize_chw(image.float(), size)
    return resized.round_().clamp_(0, 255).to(torch.uint8)


def _as_tensor(rgb: np.ndarray) -> torch.Tensor:
    with warnings.catch_warnings():  # ROS buffers are read-only; torch only reads them here
        warnings.simplefilter("ignore", UserWarning)
        return torch.from_numpy(np.ascontiguousarray(rgb))


class Preprocessor:
    """uint8 (H, W, 3) RGB -> normalized float (1, 3, h, w) on ``device`` in ``dtype``."""

    def __init__(self, input_size: tuple[int, int], normalization: str, device: torch.device, dtype: torch.dtype):
        scale, shift = input_affine(normalization)
        self.input_size = input_size
        self.normalization = normalization
        self.device = device
        self.dtype = dtype
        self._scale, self._shift = scale.to(device), shift.to(device)

    def __call__(self, rgb: np.ndarray) -> torch.Tensor:
        image = _as_tensor(rgb).to(self.device, non_blocking=True)
        return self.normalize(resize_rgb_uint8(image, self.input_size).float())

    def normalize(self, image: torch.Tensor) -> torch.Tensor:
        """Float (1, 3, h, w) pixel values in [0, 255] at the network size -> the network input."""
        return (image * self._scale + self._shift).to(self.dtype).contiguous()
