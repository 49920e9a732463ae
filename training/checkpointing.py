"""Training checkpoints (exact resume), atomic writes, keep-last-N + best, and export of the weights
in the released official layout that ``dap_ros.model.load_model`` and the node read as they are.

A training checkpoint is a plain dict loadable with ``torch.load(weights_only=True)``:
``{"format", "step", "epoch", "batch_in_epoch", "model", "optimizer", "schedule", "scaler", "ema",
"rng": [per-rank states], "world_size", "config", "metric", "best"}``; ``model`` uses our own
parameter names (``load_model`` accepts those too, through its ``{"model": ...}`` unwrapping).
"""
from __future__ import annotations

import json
import os
import random
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

FORMAT = "dap_ros.training/1"
_CKPT_RE = re.compile(r"^step_(\d{8})\.pt$")

# ---------------------------------------------------------------------------------------------
# Official layout export: the inverse of dap_ros/model/checkpoint.py's _KEY_RULES.
# ---------------------------------------------------------------------------------------------
_HEAD = r"(depth_head|mask_head)\."
_INVERSE_RULES: list[tuple[re.Pattern, str | Callable[[re.Match], str]]] = [
    (re.compile(r"^backbone\."), "core.pretrained.model."),
    (re.compile(r"^adapter\.norm\."), "core.pretrained.norm."),
    (re.compile(r"^" + _HEAD + r"projections\.(\d)\."), r"core.\1.projects.\2."),
    (re.compile(r"^" + _HEAD + r"resamplers\.(\d)\."), r"core.\1.resize_layers.\2."),
    (re.compile(r"^" + _HEAD + r"layer_convs\.(\d)\."), lambda m: f"core.{m[1]}.scratch.layer{int(m[2]) + 1}_rn."),
    (
        re.compile(r"^" + _HEAD + r"fusions\.(\d)\.skip_unit\."),
        lambda m: f"core.{m[1]}.scratch.refinenet{int(m[2]) + 1}.resConfUnit1.",
    ),
    (
        re.compile(r"^" + _HEAD + r"fusions\.(\d)\.residual_unit\."),
        lambda m: f"core.{m[1]}.scratch.refinenet{int(m[2]) + 1}.resConfUnit2.",
    ),
    (
        re.compile(r"^" + _HEAD + r"fusions\.(\d)\.out_conv\."),
        lambda m: f"core.{m[1]}.scratch.refinenet{int(m[2]) + 1}.out_conv.",
    ),
    (re.compile(r"^" + _HEAD + r"output_conv1\."), r"core.\1.scratch.output_conv1."),
    (re.compile(r"^" + _HEAD + r"output_conv2\."), r"core.\1.scratch.output_conv2.0."),
    (re.compile(r"^" + _HEAD + r"output_conv3\."), r"core.\1.scratch.output_conv2.2."),
]
_BLOCK = re.compile(r"^backbone\.blocks\.")


def to_official_state_dict(model_or_state: nn.Module | Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Our names -> the released ``DAP`` module's names, in the same order as the official file:
    ``core.pretrained.model.*``, the duplicate ``core.pretrained.blocks.*`` (the official adapter
    re-registers the block list, so each block tensor is saved twice), ``core.pretrained.norm.*``,
    then both heads. Tensors are detached CPU copies; DDP ``module.`` prefixes are removed."""
    state = model_or_state.state_dict() if isinstance(model_or_state, nn.Module) else model_or_state
    state = {k[len("module.") :] if k.startswith("module.") else k: v for k, v in state.items()}
    backbone, blocks, norm, heads = {}, {}, {}, {}
    for key, value in state.items():
        new_key = None
        for pattern, replacement in _INVERSE_RULES:
            if pattern.match(key):
                new_key = pattern.sub(replacement, key, count=1)
                break
        if new_key is None:
            raise KeyError(f"no official name for parameter '{key}'")
        tensor = value.detach()
        if tensor.device.type != "meta":  # meta: layout checks without memory
            tensor = tensor.to("cpu").clone()
        if key.startswith("backbone."):
            backbone[new_key] = tensor
            if _BLOCK.match(key):
                blocks["core.pretrained." + key[len("backbone.") :]] = tensor
        elif key.startswith("adapter."):
            norm[new_key] = tensor
        else:
            heads[new_key] = tensor
    return {**backbone, **blocks, **norm, **_official_head_order(heads)}


_REFINENET = re.compile(r"^(core\.\w+\.scratch\.refinenet\d\.)")


def _official_head_order(heads: dict[str, Tensor]) -> dict[str, Tensor]:
    """The official fusion block registers out_conv before its two residual units; ours after.
    Reorder inside each refinenet group (by submodule name) so the file matches the released one."""
    first_seen: dict[str, int] = {}
    keyed = []
    for index, key in enumerate(heads):
        m = _REFINENET.match(key)
        group = m[1] if m else key
        first_seen.setdefault(group, index)
        keyed.append(((first_seen[group], key.rsplit(".", 1)[0] if m else "", index), key))
    return {key: heads[key] for _, key in sorted(keyed)}


def dinov3_backbone_state(state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """A DINOv3 ViT backbone file (keys = official ``core.pretrained.model.*`` without that prefix,
    e.g. ``blocks.0.attn.qkv.weight``) -> our ``backbone.*`` names. Also accepts a full DAP state
    (official or ours), from which the backbone part is taken."""
    out = {}
    for key, value in state.items():
        if key.startswith("core.pretrained.model."):
            out["backbone." + key[len("core.pretrained.model.") :]] = value
        elif key.startswith("backbone."):
            out[key] = value
        elif not key.startswith(("core.", "depth_head.", "mask_head.", "adapter.")):
            out["backbone." + key] = value
    return out


# ---------------------------------------------------------------------------------------------
# Atomic writes
# ---------------------------------------------------------------------------------------------
def atomic_save(obj: Any, path: str | Path) -> Path:
    """torch.save to a temporary file in the same folder, fsync, then os.replace: a reader (or a
    run killed mid-write) sees either the old file or the complete new one, never a partial file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.{os.getpid()}")
    try:
        with open(tmp, "wb") as fh:
            torch.save(obj, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    _fsync_dir(path.parent)
    return path


def atomic_write_text(text: str, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.{os.getpid()}")
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)
    return path


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def export_official(model_state: Mapping[str, Tensor], path: str | Path, model_config: dict | None = None) -> Path:
    """Write the weights as a plain state dict in the released layout (what ``model.pth`` holds);
    ``model_config`` is written beside it as ``<stem>.json`` (docs/conventions.md) when given."""
    path = atomic_save(to_official_state_dict(model_state), path)
    if model_config is not None:
        atomic_write_text(json.dumps(model_config, indent=2) + "\n", path.with_suffix(".json"))
    return path


# ---------------------------------------------------------------------------------------------
# RNG state (per rank), loadable with weights_only=True
# ---------------------------------------------------------------------------------------------
def capture_rng_state(device: torch.device) -> dict:
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": {
            "kind": kind,
            "keys": torch.from_numpy(np.asarray(keys, dtype=np.uint32).astype(np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached": float(cached),
        },
        "torch": torch.get_rng_state(),
    }
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def restore_rng_state(state: dict, device: torch.device) -> None:
    random.setstate(_tupleize(state["python"]))
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached"]))
    torch.set_rng_state(state["torch"].cpu())
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"].cpu(), device)


def _tupleize(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return tuple(_tupleize(v) for v in value)
    return value


# ---------------------------------------------------------------------------------------------
# Checkpoint folder: step_XXXXXXXX.pt (last N), best.pt, best.json
# ---------------------------------------------------------------------------------------------
class CheckpointManager:
    def __init__(self, folder: str | Path, keep_last: int = 3, best_mode: str = "min") -> None:
        self.folder = Path(folder)
        self.keep_last = keep_last
        self.best_mode = best_mode

    def checkpoints(self) -> list[Path]:
        if not self.folder.is_dir():
            return []
        found = sorted(p for p in self.folder.iterdir() if _CKPT_RE.match(p.name))
        return found

    def latest(self) -> Path | None:
        found = self.checkpoints()
        return found[-1] if found else None

    def best_value(self) -> float | None:
        info = self.folder / "best.json"
        if not info.is_file():
            return None
        try:
            return float(json.loads(info.read_text())["value"])
        except (ValueError, KeyError, json.JSONDecodeError):
            return None

    def is_better(self, value: float | None) -> bool:
        if value is None or not np.isfinite(value):
            return False
        best = self.best_value()
        if best is None:
            return True
        return value < best if self.best_mode == "min" else value > best

    def save(self, state: dict, step: int, metric_name: str = "", metric: float | None = None) -> Path:
        path = atomic_save(state, self.folder / f"step_{step:08d}.pt")
        if metric is not None and self.is_better(metric):
            atomic_save(state, self.folder / "best.pt")
            atomic_write_text(
                json.dumps({"step": step, "metric": metric_name, "value": metric}) + "\n", self.folder / "best.json"
            )
        for old in self.checkpoints()[: -self.keep_last]:
            old.unlink(missing_ok=True)
        return path


def load_checkpoint(path: str | Path) -> dict:
    state = torch.load(str(path), map_location="cpu", weights_only=True)
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise ValueError(f"{path} is not a dap_ros training checkpoint (format {FORMAT})")
    return state
