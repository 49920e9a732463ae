"""Optimizer (two learning rates), warm-up + cosine/constant schedule, EMA, unused-parameter freezing."""
from __future__ import annotations

import math
from collections.abc import Iterable

import torch
from torch import nn

from dap_ros.model import DAP


def unused_parameter_names(model: DAP) -> list[str]:
    """Parameters that never receive a gradient in DAP's forward pass.

    - the deepest DPT fusion block of each head gets no skip input, so its ``skip_unit`` is unused
      (kept only so the released checkpoint loads);
    - the backbone's ``mask_token`` belongs to DINOv3's masked pretraining;
    - backbone blocks after the last one the heads read (none for the released layout).

    They are frozen (``requires_grad=False``) rather than handled with DDP's
    ``find_unused_parameters=True``, which costs an extra graph traversal every step. They stay in
    the state dict, so checkpoints keep the official layout.
    """
    names = ["backbone.mask_token"]
    last = max(model.config.intermediate_layers)
    for name, _ in model.named_parameters():
        if name.startswith("backbone.blocks."):
            if int(name.split(".")[2]) > last:
                names.append(name)
    for head in ("depth_head", "mask_head"):
        deepest = len(getattr(model, head).fusions) - 1
        prefix = f"{head}.fusions.{deepest}.skip_unit."
        names.extend(n for n, _ in model.named_parameters() if n.startswith(prefix))
    return names


def freeze_unused_parameters(model: DAP) -> list[str]:
    names = set(unused_parameter_names(model))
    for name, param in model.named_parameters():
        if name in names:
            param.requires_grad_(False)
    return sorted(names)


def _no_decay(name: str, param: nn.Parameter) -> bool:
    """Norm weights, biases, tokens and LayerScale gammas are not weight-decayed."""
    return param.ndim <= 1 or name.endswith("_token") or name.endswith("_tokens") or "gamma" in name


# Parameters trained at ``lr_backbone``: the official encoder group is ``core.pretrained.parameters()``
# (networks/dap.py, get_encoder_decoder_params), i.e. the DINOv3Adapter = the DINOv3 ViT *and* the
# adapter's extra LayerNorm (``core.pretrained.norm`` -> our ``adapter.norm``).
ENCODER_PREFIXES = ("backbone.", "adapter.")


def param_part(name: str) -> str:
    """'backbone' (the official encoder: ViT + adapter LayerNorm) or 'heads' (depth / mask heads)."""
    return "backbone" if name.startswith(ENCODER_PREFIXES) else "heads"


def param_groups(model: DAP, lr_backbone: float, lr_heads: float, weight_decay: float) -> list[dict]:
    """Four groups: {backbone, heads} x {decay, no_decay}. 'backbone' = the official encoder group
    (``model.backbone`` and the adapter's LayerNorm), 'heads' = depth_head and mask_head (the
    official decoder and mask groups). Each group records its base LR."""
    buckets: dict[tuple[str, bool], list[nn.Parameter]] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        part = param_part(name)
        buckets.setdefault((part, _no_decay(name, param)), []).append(param)
    groups = []
    for (part, no_decay), params in sorted(buckets.items()):
        lr = lr_backbone if part == "backbone" else lr_heads
        groups.append(
            {
                "params": params,
                "lr": lr,
                "base_lr": lr,
                "weight_decay": 0.0 if no_decay else weight_decay,
                "name": f"{part}{'_no_decay' if no_decay else ''}",
            }
        )
    return groups


def build_optimizer(model: DAP, optim_cfg: dict) -> torch.optim.Optimizer:
    groups = param_groups(model, optim_cfg["lr_backbone"], optim_cfg["lr_heads"], optim_cfg["weight_decay"])
    cls = torch.optim.AdamW if optim_cfg["name"] == "adamw" else torch.optim.Adam
    kwargs = {"betas": tuple(optim_cfg["betas"]), "eps": optim_cfg["eps"]}
    if torch.cuda.is_available():
        kwargs["fused"] = all(p.is_cuda for g in groups for p in g["params"])
    return cls(groups, **kwargs)


def lr_factor(step: int, warmup_steps: int, total_steps: int, name: str, min_ratio: float) -> float:
    """Multiplier of the base LR for optimizer step ``step`` (0-based): linear warm-up from
    1/(warmup+1) to 1, then constant or a cosine decay to ``min_ratio`` at ``total_steps``."""
    if step < warmup_steps:
        return (step + 1) / (warmup_steps + 1)
    if name == "constant":
        return 1.0
    span = max(1, total_steps - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / span)
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


class WarmupSchedule:
    """Sets every group's LR to base_lr * lr_factor(step). Its state is just the step counter."""

    def __init__(self, optimizer: torch.optim.Optimizer, schedule_cfg: dict, total_steps: int) -> None:
        self.optimizer = optimizer
        self.cfg = dict(schedule_cfg)
        self.total_steps = total_steps
        self.step_count = 0
        self._apply()

    def factor(self) -> float:
        c = self.cfg
        return lr_factor(self.step_count, c["warmup_steps"], self.total_steps, c["name"], c["min_lr_ratio"])

    def _apply(self) -> None:
        f = self.factor()
        for group in self.optimizer.param_groups:
            group["lr"] = group["base_lr"] * f

    def step(self) -> None:
        self.step_count += 1
        self._apply()

    def lrs(self) -> dict[str, float]:
        return {g["name"]: g["lr"] for g in self.optimizer.param_groups}

    def state_dict(self) -> dict:
        return {"step_count": self.step_count}

    def load_state_dict(self, state: dict) -> None:
        self.step_count = int(state["step_count"])
        self._apply()


class ModelEMA:
    """Exponential moving average of the floating-point state (parameters and float buffers).

    decay_t = min(decay, (1 + t) / (10 + t)) so the average is not dominated by the initial weights.
    """

    def __init__(self, model: nn.Module, decay: float) -> None:
        self.decay = decay
        self.updates = 0
        self.shadow = {k: v.detach().clone().float() for k, v in model.state_dict().items() if v.is_floating_point()}

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        self.updates += 1
        d = min(self.decay, (1 + self.updates) / (10 + self.updates))
        for key, value in model.state_dict().items():
            if key in self.shadow:
                self.shadow[key].lerp_(value.detach().float(), 1.0 - d)

    def state_dict(self) -> dict:
        return {"decay": self.decay, "updates": self.updates, "shadow": self.shadow}

    def load_state_dict(self, state: dict) -> None:
        self.decay = float(state["decay"])
        self.updates = int(state["updates"])
        for key, value in state["shadow"].items():
            self.shadow[key].copy_(value)

    def model_state(self, model: nn.Module) -> dict[str, torch.Tensor]:
        """A full state dict of ``model`` with the averaged values (non-float buffers as they are)."""
        out = {}
        for key, value in model.state_dict().items():
            out[key] = self.shadow[key].to(value.dtype) if key in self.shadow else value
        return out


def trainable_parameters(model: nn.Module) -> Iterable[nn.Parameter]:
    return [p for p in model.parameters() if p.requires_grad]
