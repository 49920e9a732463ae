"""Device and precision names -> torch objects, checked against what this machine has."""
from __future__ import annotations

import contextlib

import torch

from dap_ros.errors import ConfigError
from dap_ros.settings import check, device_problem

_DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def resolve_device(device: str) -> torch.device:
    """'auto' (CUDA when available, else the CPU), 'cpu', 'cuda' or 'cuda:N'."""
    text = check("device", str(device).strip().lower(), device_problem(device))
    if text == "auto":
        text = "cuda" if torch.cuda.is_available() else "cpu"
    dev = torch.device(text)
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(
                f"device {device!r} requested but CUDA is not available (torch {torch.__version__}, "
                f"built with CUDA {torch.version.cuda}); use device 'cpu' or install a CUDA build of torch"
            )
        if (dev.index or 0) >= torch.cuda.device_count():
            raise ConfigError(f"device {device!r}: only {torch.cuda.device_count()} CUDA device(s) present")
    return dev


def compute_dtype(precision: str, device: torch.device) -> torch.dtype:
    """The torch dtype of a precision name (one of settings.PRECISIONS), refused where ``device``
    cannot compute in it."""
    if precision == "fp16" and device.type == "cpu":
        raise ConfigError("precision fp16 needs a CUDA device; on the CPU use fp32 (or bf16)")
    if precision == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise ConfigError(f"precision bf16 is not supported by {torch.cuda.get_device_name(device)}; use fp16")
    return _DTYPES[precision]


def precision_name(dtype: torch.dtype) -> str:
    return next(name for name, value in _DTYPES.items() if value == dtype)


def cuda_device_scope(index: int) -> contextlib.AbstractContextManager:
    """Make CUDA device ``index`` current for the block: TensorRT builds, and deserializes engines,
    on the current device, whatever device the caller meant."""
    return torch.cuda.device(index)
