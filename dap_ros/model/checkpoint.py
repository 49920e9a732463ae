"""Strict checkpoint loading: the released ``model.pth`` (official key layout), its fp16/bf16 copies,
``module.``-prefixed DataParallel saves, and our own safetensors files.

The official loader uses ``strict=False`` after filtering keys, so a wrong file silently gives an
untrained network. Here every missing, unexpected or mis-shaped tensor is an error that names keys.
"""
from __future__ import annotations

import pickle
import re
import zipfile
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import Tensor, nn

from dap_ros.errors import CheckpointError

WEIGHTS_HINT = (
    "the released DAP weights are model.pth in the Hugging Face repository "
    "Insta360-Research/DAP-weights (about 1.5 GB); see the README section 'Getting the weights'"
)

# Official module path -> ours. Applied in order; the first matching pattern wins.
_HEAD = r"core\.(depth_head|mask_head)\."
_KEY_RULES: list[tuple[re.Pattern, str]] = [
    (re.compile(r"^core\.pretrained\.model\."), "backbone."),
    (re.compile(r"^core\.pretrained\.norm\."), "adapter.norm."),
    (re.compile(_HEAD + r"projects\.(\d)\."), r"\1.projections.\2."),
    (re.compile(_HEAD + r"resize_layers\.(\d)\."), r"\1.resamplers.\2."),
    (re.compile(_HEAD + r"scratch\.layer(\d)_rn\."), lambda m: f"{m[1]}.layer_convs.{int(m[2]) - 1}."),
    (
        re.compile(_HEAD + r"scratch\.refinenet(\d)\.resConfUnit1\."),
        lambda m: f"{m[1]}.fusions.{int(m[2]) - 1}.skip_unit.",
    ),
    (
        re.compile(_HEAD + r"scratch\.refinenet(\d)\.resConfUnit2\."),
        lambda m: f"{m[1]}.fusions.{int(m[2]) - 1}.residual_unit.",
    ),
    (re.compile(_HEAD + r"scratch\.refinenet(\d)\.out_conv\."), lambda m: f"{m[1]}.fusions.{int(m[2]) - 1}.out_conv."),
    (re.compile(_HEAD + r"scratch\.output_conv1\."), r"\1.output_conv1."),
    (re.compile(_HEAD + r"scratch\.output_conv2\.0\."), r"\1.output_conv2."),
    (re.compile(_HEAD + r"scratch\.output_conv2\.2\."), r"\1.output_conv3."),
]
# The official adapter re-registers the backbone's block list, so every block tensor is saved twice.
_DUPLICATE_BLOCKS = re.compile(r"^core\.pretrained\.blocks\.")


def read_state_dict(path: str | Path) -> dict[str, Tensor]:
    """Read a checkpoint file into a flat {name: tensor} dict; user-facing errors for bad files."""
    path = Path(path).expanduser()
    if not path.exists():
        raise CheckpointError(f"checkpoint not found: {path} ({WEIGHTS_HINT})")
    if not path.is_file():
        raise CheckpointError(f"checkpoint path is not a file: {path}")
    if path.stat().st_size == 0:
        raise CheckpointError(f"checkpoint {path} is empty (0 bytes): the download or copy did not finish")
    if path.suffix == ".safetensors":
        try:
            from safetensors.torch import load_file

            data: object = load_file(str(path))
        except Exception as exc:  # noqa: BLE001 - safetensors raises its own error types
            raise CheckpointError(f"checkpoint {path} is not a readable safetensors file ({exc})") from None
    else:
        try:
            data = torch.load(str(path), map_location="cpu", weights_only=True, mmap=zipfile.is_zipfile(path))
        except pickle.UnpicklingError:  # torch suggests weights_only=False: never for a file of unknown origin
            raise CheckpointError(
                f"checkpoint {path} holds Python objects besides tensors, which are not loaded (unpickling them can "
                "run arbitrary code); re-save it as a plain state dict (torch.save(model.state_dict(), ...)) or as "
                ".safetensors"
            ) from None
        except Exception as exc:  # noqa: BLE001 - torch raises many types here: truncated zip, pickle refused, ...
            detail = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ""
            raise CheckpointError(
                f"checkpoint {path} cannot be read as a PyTorch state dict; it may be truncated or not a "
                f"checkpoint at all ({type(exc).__name__}: {detail})"
            ) from None
    return _unwrap(data, path)


def _unwrap(data: object, path: Path) -> dict[str, Tensor]:
    """Accept a bare state dict or the usual containers ({'state_dict': ...}, {'model': ...})."""
    for _ in range(3):
        if isinstance(data, Mapping) and not any(isinstance(v, Tensor) for v in data.values()):
            inner = next((data[k] for k in ("state_dict", "model", "module", "ema") if k in data), None)
            if inner is None:
                break
            data = inner
    if not isinstance(data, Mapping) or not data:
        raise CheckpointError(f"checkpoint {path} holds no state dict (found {type(data).__name__})")
    tensors = {str(k): v for k, v in data.items() if isinstance(v, Tensor)}
    if not tensors:
        raise CheckpointError(f"checkpoint {path} holds no tensors")
    if all(k.startswith("module.") for k in tensors):
        tensors = {k[len("module.") :]: v for k, v in tensors.items()}
    return tensors


def convert_official_keys(state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Map official DAP names onto this implementation's; names already ours pass through."""
    converted: dict[str, Tensor] = {}
    for key, value in state.items():
        if _DUPLICATE_BLOCKS.match(key):
            continue
        new_key = key
        for pattern, replacement in _KEY_RULES:
            if pattern.match(new_key):
                new_key = pattern.sub(replacement, new_key, count=1)
                break
        converted[new_key] = value
    return converted


def describe_architecture(state: Mapping[str, Tensor]) -> str:
    """A short guess at what network a (converted) state dict belongs to, for error messages."""
    prefix = "backbone." if "backbone.patch_embed.proj.weight" in state else ""  # a DAP network or its backbone
    proj = state.get(prefix + "patch_embed.proj.weight")
    if proj is None or proj.dim() != 4:
        return "not a DAP checkpoint (no backbone.patch_embed / core.pretrained.model.patch_embed)"
    blocks = {int(m[1]) for k in state if (m := re.match(prefix.replace(".", r"\.") + r"blocks\.(\d+)\.", k))}
    return f"a ViT with embed_dim={proj.shape[0]}, patch_size={proj.shape[-1]}, depth={len(blocks)}"


def load_state_dict_strict(module: nn.Module, state: Mapping[str, Tensor], source: str = "checkpoint",
                           hint: str = "Check --model-config / model_config.") -> None:
    """Copy ``state`` (official or native names, any float dtype) into ``module`` (the DAP network or
    one of its parts, e.g. the backbone); every tensor must match by name and shape, and be finite.

    Loading goes through ``nn.Module.load_state_dict``, so modules that cache tables derived from
    their buffers (RoPE) drop them; ``hint`` ends the error message (what to check).
    """
    state = convert_official_keys(state)
    expected = module.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    mismatched = sorted(
        f"{k} (file {tuple(state[k].shape)}, model {tuple(expected[k].shape)})"
        for k in set(state) & set(expected)
        if state[k].shape != expected[k].shape
    )
    if missing or unexpected or mismatched:
        parts = []
        for label, keys in (("missing", missing), ("unexpected", unexpected), ("shape mismatch", mismatched)):
            if keys:
                shown = ", ".join(keys[:5]) + (f", ... ({len(keys)} in all)" if len(keys) > 5 else "")
                parts.append(f"{label}: {shown}")
        raise CheckpointError(
            f"{source} does not fit {_describe_module(module)}; the file looks like "
            f"{describe_architecture(state)}. " + "; ".join(parts) + f". {hint}"
        )
    # copy_ would cast int32 / bool / complex silently (complex drops its imaginary part)
    not_float = sorted(f"{k} ({state[k].dtype})" for k in state
                       if expected[k].is_floating_point() and not state[k].is_floating_point())
    if not_float:
        shown = ", ".join(not_float[:5]) + (f", ... ({len(not_float)} in all)" if len(not_float) > 5 else "")
        raise CheckpointError(f"{source} has tensors that are not floating point, where the model has weights: "
                              f"{shown}; the file is damaged or not DAP weights")
    bad = [k for k, v in state.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        raise CheckpointError(f"{source} contains NaN or Inf values in {len(bad)} tensors, e.g. {bad[0]}")
    module.load_state_dict(dict(state), strict=True)  # copy_ casts each tensor to the module's dtype


def _describe_module(module: nn.Module) -> str:
    cfg = getattr(module, "config", None)  # the DAP network carries its ModelConfig
    if cfg is not None:
        return f"the model config (embed_dim={cfg.embed_dim}, depth={cfg.depth})"
    return f"this {type(module).__name__}"
