"""The contract between the predictor and an inference backend."""
from __future__ import annotations

from typing import Protocol

import torch
from torch import Tensor


class Runner(Protocol):
    """Runs the network: normalized input (B, 3, h, w) on ``device`` in ``input_dtype`` ->
    ``(pred_depth, pred_mask)``, each (B, 1, h, w) on ``device``, in the network's units
    (docs/conventions.md). Outputs may be the runner's own buffers, valid until the next call."""

    name: str  # the backend: torch, onnxruntime or tensorrt
    device: torch.device  # where the input must be and the outputs are
    input_dtype: torch.dtype
    precision: str  # fp32, fp16 or bf16: what the network computes in
    patch_size: int  # network input sides must be multiples of this
    input_shape: tuple[int, ...] | None  # fixed (B, 3, h, w) of an exported file; None: any size

    def describe(self) -> str:
        """One line for logs: backend, precision, file, device, options."""
        ...

    def __call__(self, x: Tensor) -> tuple[Tensor, Tensor]: ...
