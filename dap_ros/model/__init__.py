"""The DAP network and its loading: ``load_model(checkpoint, config)``."""
from __future__ import annotations

from pathlib import Path

import torch

from dap_ros.config import ConfigLike, resolve_config
from dap_ros.model.checkpoint import (
    WEIGHTS_HINT,
    convert_official_keys,
    load_state_dict_strict,
    read_state_dict,
)
from dap_ros.model.dap import DAP

__all__ = [
    "DAP",
    "WEIGHTS_HINT",
    "build_model",
    "convert_official_keys",
    "count_parameters",
    "load_model",
    "read_state_dict",
]


def build_model(config: ConfigLike) -> DAP:
    """A randomly initialized DAP network of the given architecture (preset name, JSON path, dict)."""
    return DAP(resolve_config(config))


def load_model(
    checkpoint: str | Path | None,
    config: ConfigLike = "vitl",
    device: str | torch.device = "cpu",
    dtype: torch.dtype | None = None,
) -> DAP:
    """Build the network for ``config`` and load ``checkpoint`` strictly (None: random weights).

    Returns the module in eval mode. ``forward(x)`` takes a normalized (B, 3, H, W) float tensor
    and returns {"pred_depth", "pred_mask"}, each (B, 1, H, W), in the official units.
    """
    # read first: a missing or unreadable file fails before the (tens of seconds) build of the network
    state = read_state_dict(checkpoint) if checkpoint is not None else None
    model = build_model(config)
    if state is not None:
        load_state_dict_strict(model, state, source=f"checkpoint {checkpoint}")
    model = model.to(device=device, dtype=dtype) if dtype is not None else model.to(device)
    return model.eval()


def count_parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
