"""Training configuration: YAML files under training/configs/ merged over DEFAULTS, then dotted
command-line overrides (``optim.lr_heads=1e-4 data.train.num_samples=64``), then validation.

Every key must exist in DEFAULTS (typos are errors that suggest the closest key), values must have
the default's type (ints are accepted where floats are expected), and a few cross-field rules are
checked. Keys whose default is ``None`` or a dict marked open (dataset specs, loss weights) accept
anything of the right kind: those are validated by the code that consumes them.
"""
from __future__ import annotations

import copy
import difflib
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

# Keys below these paths hold free-form mappings passed on to other code (dataset specs, loss weights).
OPEN_KEYS = {"data.train", "data.val", "loss.weights", "model.config"}

DEFAULTS: dict[str, Any] = {
    "run": {
        "name": "run",
        "out_dir": "runs/run",  # checkpoints/, export/, tb/, metrics.jsonl live here
        "seed": 0,
        "resume": "auto",  # auto: resume from out_dir/checkpoints if present | never | path to a checkpoint
    },
    "model": {
        "config": "tiny",  # preset name (vitl, tiny), JSON path, or an inline mapping (docs/conventions.md)
        "init": "random",  # random | dinov3 (backbone file) | dap (released checkpoint, strict) | checkpoint (ours)
        "checkpoint": None,  # the file for init dinov3 / dap / checkpoint
        "gradient_checkpointing": False,
        # DINOv3's training-mode RoPE coordinate rescaling: each training forward multiplies the
        # patch coordinates by one log-uniform scale in [1/r, r] (official ViT-L/16: r = 2, the
        # released backbone was trained and DAP fine-tuned with it). null = off. Eval is unaffected.
        # The draws come from the RoPE module's own generator, seeded from (run.seed, rank, step).
        "rope_rescale_coords": None,
    },
    "data": {
        "train": {"type": "synthetic", "num_samples": 64, "seed": 0, "height": 64, "width": 128, "augment": True},
        "val": None,  # a dataset spec, or None for no validation
        "extra_train": [],  # more dataset specs concatenated with data.train (data engine: pseudo-labels)
        "batch_size": 2,  # per process
        "val_batch_size": 2,
        "num_workers": 0,
        "shuffle": True,
    },
    "loss": {
        "weights": None,  # None: the paper's 1.0 / 0.4 / 5.0 / 2.0 / 2.0 / 2.0
        # the paper's cos(latitude) weight on the per-pixel losses; false weights every ERP pixel
        # equally, as the (unweighted, per-pixel) AbsRel / delta metrics do
        "distortion": True,
        # SILog's lambda: 1 ignores a global scale error, 0 is plain RMSE of log depth. 0.85 is this
        # package's default; the official DAP code's only SILog (SiLogLoss in
        # depth_anything_v2_metric/util/loss.py) uses 0.5, which vitl_finetune.yaml sets.
        "silog_lambda": 0.85,
    },
    "optim": {
        "name": "adam",  # adam (paper) | adamw
        "lr_backbone": 5e-6,
        "lr_heads": 5e-5,  # depth_head and mask_head (the adapter's LayerNorm is in the backbone group)
        "weight_decay": 0.0,  # applied to weight matrices only (not norms, biases, tokens, LayerScale)
        "betas": [0.9, 0.999],
        "eps": 1e-8,
        "grad_clip": 1.0,  # max global grad norm; 0 disables clipping
        "grad_accum": 1,  # micro-batches per optimizer step
    },
    "schedule": {
        "name": "cosine",  # cosine | constant (both after a linear warm-up)
        "warmup_steps": 0,
        "min_lr_ratio": 0.1,  # cosine floor as a fraction of the base LR
        "total_steps": None,  # length of the schedule; None: train.max_steps (set it to stop a run early)
    },
    "train": {
        "max_steps": 1000,  # optimizer steps
        "device": "auto",  # auto | cpu | cuda
        "amp": "none",  # none | bf16 | fp16 (fp16 uses a GradScaler)
        "ema": {"enabled": False, "decay": 0.999},
        "log_every": 10,
        "val_every": 0,  # 0: validate only at the end (when data.val is set)
        "val_max_batches": 0,  # 0: the whole validation set
        "ckpt_every": 100,
        "keep_last": 3,
        "best_metric": "abs_rel",
        "best_mode": "min",  # min | max
        "deterministic": False,  # torch.use_deterministic_algorithms (CPU tests)
        "threads": 0,  # torch.set_num_threads when > 0
    },
    "logging": {
        "tensorboard": True,
        "progress": True,  # tqdm bar on rank 0
        "val_images": 2,  # image panels per validation
    },
}

CHOICES = {
    "run.resume": None,  # free string (auto | never | path), checked below
    "model.init": ("random", "dinov3", "dap", "checkpoint"),
    "optim.name": ("adam", "adamw"),
    "schedule.name": ("cosine", "constant"),
    "train.amp": ("none", "bf16", "fp16"),
    "train.device": ("auto", "cpu", "cuda"),
    "train.best_mode": ("min", "max"),
}


class TrainConfigError(ValueError):
    """A training config file or override is invalid; the message says which key and why."""


class Config(dict):
    """A nested dict with attribute access (``cfg.optim.lr_heads``); stays a plain dict for YAML/torch.save."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None

    def __setattr__(self, name: str, value: Any) -> None:
        self[name] = value

    @staticmethod
    def wrap(value: Any) -> Any:
        if isinstance(value, dict) and not isinstance(value, Config):
            return Config({k: Config.wrap(v) for k, v in value.items()})
        if isinstance(value, list):
            return [Config.wrap(v) for v in value]
        return value

    def to_dict(self) -> dict:
        def plain(v: Any) -> Any:
            if isinstance(v, dict):
                return {k: plain(x) for k, x in v.items()}
            if isinstance(v, list):
                return [plain(x) for x in v]
            return v

        return plain(self)


def _merge(base: dict, update: dict, prefix: str = "") -> None:
    for key, value in update.items():
        path = f"{prefix}{key}"
        if path in OPEN_KEYS:
            base[key] = copy.deepcopy(value)
        elif key not in base:
            raise TrainConfigError(_unknown(path, base, prefix))
        elif isinstance(base[key], dict) and isinstance(value, dict):
            _merge(base[key], value, prefix=path + ".")
        else:
            base[key] = copy.deepcopy(value)


def _unknown(path: str, level: dict, prefix: str) -> str:
    candidates = [prefix + k for k in level]
    close = difflib.get_close_matches(path, candidates, n=1)
    hint = f"; did you mean '{close[0]}'?" if close else f"; known keys here: {', '.join(sorted(candidates))}"
    return f"unknown config key '{path}'{hint}"


def parse_override(text: str) -> tuple[str, Any]:
    """``a.b.c=value`` -> ("a.b.c", YAML-parsed value)."""
    if "=" not in text:
        raise TrainConfigError(f"override '{text}' must look like key.path=value")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key or any(not part for part in key.split(".")):
        raise TrainConfigError(f"override '{text}' has an empty key")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError as exc:
        raise TrainConfigError(f"override '{text}': value is not valid YAML ({exc})") from None
    return key, value


def apply_override(cfg: dict, key: str, value: Any) -> None:
    parts = key.split(".")
    node = cfg
    for depth, part in enumerate(parts[:-1]):
        path = ".".join(parts[: depth + 1])
        if path in OPEN_KEYS:  # free-form: create levels as needed
            if node.get(part) is None:
                node[part] = {}
        elif part not in node:
            raise TrainConfigError(_unknown(path, node, ".".join(parts[:depth]) + ("." if depth else "")))
        if not isinstance(node[part], dict):
            raise TrainConfigError(f"override '{key}': '{path}' is not a mapping")
        node = node[part]
    leaf_parent = ".".join(parts[:-1])
    if parts[-1] not in node and not _is_open(leaf_parent):
        raise TrainConfigError(_unknown(key, node, leaf_parent + ("." if leaf_parent else "")))
    node[parts[-1]] = value


def _is_open(path: str) -> bool:
    return any(path == k or path.startswith(k + ".") for k in OPEN_KEYS)


def _check_types(cfg: dict, defaults: dict, prefix: str = "") -> list[str]:
    problems = []
    for key, default in defaults.items():
        path = f"{prefix}{key}"
        value = cfg[key]
        if path in OPEN_KEYS or default is None:
            continue
        if isinstance(default, dict):
            if not isinstance(value, dict):
                problems.append(f"'{path}' must be a mapping, got {value!r}")
            else:
                problems.extend(_check_types(value, default, path + "."))
        elif isinstance(default, bool):
            if not isinstance(value, bool):
                problems.append(f"'{path}' must be true or false, got {value!r}")
        elif isinstance(default, int):
            if isinstance(value, bool) or not isinstance(value, int):
                problems.append(f"'{path}' must be an integer, got {value!r}")
        elif isinstance(default, float):
            if isinstance(value, str):  # YAML 1.1 reads 5e-6 (no dot) as a string
                try:
                    value = cfg[key] = float(value)
                except ValueError:
                    pass
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                problems.append(f"'{path}' must be a number, got {value!r}")
            else:
                cfg[key] = float(value)
        elif isinstance(default, str):
            if not isinstance(value, str):
                problems.append(f"'{path}' must be a string, got {value!r}")
        elif isinstance(default, list):
            if not isinstance(value, list):
                problems.append(f"'{path}' must be a list, got {value!r}")
    return problems


def validate(cfg: dict) -> None:
    problems = _check_types(cfg, DEFAULTS)
    if problems:
        raise TrainConfigError("invalid training config: " + "; ".join(problems))
    for path, allowed in CHOICES.items():
        section, key = path.split(".")
        if allowed is not None and cfg[section][key] not in allowed:
            problems.append(f"'{path}' must be one of {', '.join(allowed)}, got {cfg[section][key]!r}")
    m, o, s, t, d = cfg["model"], cfg["optim"], cfg["schedule"], cfg["train"], cfg["data"]
    if m["init"] != "random" and not m["checkpoint"]:
        problems.append(f"'model.init' is '{m['init']}' but 'model.checkpoint' is not set")
    if not isinstance(m["config"], (str, dict)):
        problems.append("'model.config' must be a preset name, a JSON path or a mapping")
    rescale = m["rope_rescale_coords"]
    if rescale is not None and (isinstance(rescale, bool) or not isinstance(rescale, (int, float))
                                or not 1.0 <= rescale < float("inf")):
        problems.append(f"'model.rope_rescale_coords' must be null or a number >= 1, got {rescale!r}")
    elif rescale is not None:
        m["rope_rescale_coords"] = float(rescale)
    for key in ("lr_backbone", "lr_heads", "eps"):
        if o[key] < 0:
            problems.append(f"'optim.{key}' must be >= 0")
    if o["weight_decay"] < 0 or o["grad_clip"] < 0:
        problems.append("'optim.weight_decay' and 'optim.grad_clip' must be >= 0")
    if o["grad_accum"] < 1:
        problems.append("'optim.grad_accum' must be >= 1")
    if len(o["betas"]) != 2 or not all(isinstance(b, (int, float)) and 0 <= b < 1 for b in o["betas"]):
        problems.append("'optim.betas' must be two numbers in [0, 1)")
    if s["warmup_steps"] < 0 or not 0 <= s["min_lr_ratio"] <= 1:
        problems.append("'schedule.warmup_steps' must be >= 0 and 'schedule.min_lr_ratio' in [0, 1]")
    for key in ("max_steps", "log_every", "ckpt_every", "keep_last"):
        if t[key] < 1:
            problems.append(f"'train.{key}' must be >= 1")
    for key in ("val_every", "val_max_batches", "threads"):
        if t[key] < 0:
            problems.append(f"'train.{key}' must be >= 0")
    if not 0 < t["ema"]["decay"] < 1:
        problems.append("'train.ema.decay' must be in (0, 1)")
    for key in ("batch_size", "val_batch_size"):
        if d[key] < 1:
            problems.append(f"'data.{key}' must be >= 1")
    if d["num_workers"] < 0:
        problems.append("'data.num_workers' must be >= 0")
    if not isinstance(d["train"], (dict, list)) or not d["train"]:
        problems.append("'data.train' must be a dataset spec (a mapping with 'type') or a list of them")
    specs = (d["train"] if isinstance(d["train"], list) else [d["train"]]) + list(d["extra_train"])
    if d["val"] is not None:
        specs.append(d["val"])
    for spec in specs:
        if not isinstance(spec, dict) or "type" not in spec:
            problems.append(f"dataset spec {spec!r} must be a mapping with a 'type' key")
    if cfg["loss"]["weights"] is not None and not isinstance(cfg["loss"]["weights"], dict):
        problems.append("'loss.weights' must be a mapping of loss name -> weight, or null")
    if not isinstance(cfg["loss"]["distortion"], bool):
        problems.append("'loss.distortion' must be true or false")
    lam = cfg["loss"]["silog_lambda"]
    if isinstance(lam, bool) or not isinstance(lam, (int, float)) or not 0.0 <= lam <= 1.0:
        problems.append(f"'loss.silog_lambda' must be a number in [0, 1], got {lam!r}")
    total = cfg["schedule"]["total_steps"]
    if total is not None and (isinstance(total, bool) or not isinstance(total, int) or total < 1):
        problems.append(f"'schedule.total_steps' must be a positive integer or null, got {total!r}")
    if problems:
        raise TrainConfigError("invalid training config: " + "; ".join(problems))


def load_config(path: str | Path | None, overrides: Iterable[str] = ()) -> Config:
    """DEFAULTS <- YAML file (optional ``base: other.yaml`` chain) <- overrides; validated."""
    cfg = copy.deepcopy(DEFAULTS)
    if path is not None:
        for layer in _read_chain(Path(path)):
            _merge(cfg, layer)
    for text in overrides:
        key, value = parse_override(text)
        apply_override(cfg, key, value)
    validate(cfg)
    return Config.wrap(cfg)


def _read_chain(path: Path, seen: tuple[Path, ...] = ()) -> list[dict]:
    path = path.expanduser()
    if not path.is_file():
        raise TrainConfigError(f"config file not found: {path}")
    if path.resolve() in seen:
        raise TrainConfigError(f"config 'base' chain loops at {path}")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise TrainConfigError(f"config file {path} is not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise TrainConfigError(f"config file {path} must hold a mapping, got {type(data).__name__}")
    base = data.pop("base", None)
    layers = []
    if base is not None:
        layers = _read_chain((path.parent / base), seen + (path.resolve(),))
    return layers + [data]


def dump_config(cfg: dict, path: str | Path) -> None:
    data = cfg.to_dict() if isinstance(cfg, Config) else cfg
    Path(path).write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
