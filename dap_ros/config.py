"""The DAP architecture config (docs/conventions.md, "Architecture config"): presets and JSON files, validated."""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from importlib import resources
from pathlib import Path
from typing import Any

from dap_ros.errors import ConfigError

PRESETS_PACKAGE = "dap_ros.presets"


@dataclass(frozen=True)
class ModelConfig:
    """Hyper-parameters of a DAP network; the keys of docs/conventions.md, "Architecture config"."""

    patch_size: int
    embed_dim: int
    depth: int
    num_heads: int
    ffn_ratio: float
    n_storage_tokens: int
    layerscale: bool
    mask_k_bias: bool
    norm_eps: float
    rope_base: float
    rope_normalize_coords: str
    intermediate_layers: tuple[int, ...]
    head_features: int
    head_out_channels: tuple[int, ...]
    max_depth: float

    def __post_init__(self) -> None:
        problems = []
        for name in ("patch_size", "embed_dim", "depth", "num_heads", "head_features"):
            if getattr(self, name) <= 0:
                problems.append(f"{name} must be > 0")
        if self.n_storage_tokens < 0:
            problems.append("n_storage_tokens must be >= 0")
        if self.num_heads > 0 and self.embed_dim % (4 * self.num_heads) != 0:
            problems.append("embed_dim must be a multiple of 4 * num_heads (2-D RoPE)")
        if self.rope_normalize_coords not in ("separate", "max", "min"):
            problems.append("rope_normalize_coords must be 'separate', 'max' or 'min'")
        if len(self.intermediate_layers) != 4:
            problems.append("intermediate_layers must list 4 block indices")
        elif not all(0 <= i < self.depth for i in self.intermediate_layers):
            problems.append(f"intermediate_layers must lie in [0, depth={self.depth})")
        if len(self.head_out_channels) != 4 or min(self.head_out_channels, default=0) <= 0:
            problems.append("head_out_channels must list 4 positive channel counts")
        if self.ffn_ratio <= 0 or self.max_depth <= 0 or self.norm_eps <= 0:
            problems.append("ffn_ratio, max_depth and norm_eps must be > 0")
        if problems:
            raise ConfigError("invalid model config: " + "; ".join(problems))

    @property
    def head_dim(self) -> int:
        return self.embed_dim // self.num_heads

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["intermediate_layers"] = list(self.intermediate_layers)
        d["head_out_channels"] = list(self.head_out_channels)
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "config") -> ModelConfig:
        if not isinstance(data, dict):
            raise ConfigError(f"{source}: expected a JSON object, got {type(data).__name__}")
        names = [f.name for f in fields(cls)]
        missing = [n for n in names if n not in data]
        unknown = sorted(set(data) - set(names))
        if missing or unknown:
            raise ConfigError(
                f"{source}: "
                + (f"missing keys {missing}" if missing else "")
                + ("; " if missing and unknown else "")
                + (f"unknown keys {unknown}" if unknown else "")
            )
        try:
            return cls(
                patch_size=int(data["patch_size"]),
                embed_dim=int(data["embed_dim"]),
                depth=int(data["depth"]),
                num_heads=int(data["num_heads"]),
                ffn_ratio=float(data["ffn_ratio"]),
                n_storage_tokens=int(data["n_storage_tokens"]),
                layerscale=bool(data["layerscale"]),
                mask_k_bias=bool(data["mask_k_bias"]),
                norm_eps=float(data["norm_eps"]),
                rope_base=float(data["rope_base"]),
                rope_normalize_coords=str(data["rope_normalize_coords"]),
                intermediate_layers=tuple(int(i) for i in data["intermediate_layers"]),
                head_features=int(data["head_features"]),
                head_out_channels=tuple(int(c) for c in data["head_out_channels"]),
                max_depth=float(data["max_depth"]),
            )
        except (TypeError, ValueError) as exc:
            if isinstance(exc, ConfigError):
                raise ConfigError(f"{source}: {exc}") from None
            raise ConfigError(f"{source}: a value has the wrong type ({exc})") from None


def preset_names() -> list[str]:
    """Names accepted by :func:`resolve_config` besides JSON file paths."""
    folder = resources.files(PRESETS_PACKAGE)
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".json"))


ConfigLike = str | Path | ModelConfig | dict


def resolve_config(config: ConfigLike) -> ModelConfig:
    """Turn a preset name ('vitl', 'tiny'), a JSON file path, a dict or a ModelConfig into a ModelConfig."""
    if isinstance(config, ModelConfig):
        return config
    if isinstance(config, dict):
        return ModelConfig.from_dict(config)
    text = str(config)
    if text in preset_names():
        data = json.loads(resources.files(PRESETS_PACKAGE).joinpath(f"{text}.json").read_text())
        return ModelConfig.from_dict(data, source=f"preset '{text}'")
    path = Path(text).expanduser()
    if not path.suffix == ".json" and not path.exists():
        raise ConfigError(
            f"unknown model config '{text}': use a preset ({', '.join(preset_names())}) "
            "or the path of a JSON file with the architecture keys (docs/conventions.md)"
        )
    if not path.is_file():
        raise ConfigError(f"model config file not found: {path}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"model config {path} is not readable JSON: {exc}") from None
    return ModelConfig.from_dict(data, source=str(path))
