"""The small demo model shipped inside the package (dap_ros/assets/embedded/).

Used when no checkpoint is configured, so that a fresh install produces real (if synthetic-only)
depth. It was trained on procedurally generated panoramas only (see its MODEL_CARD.md): good
enough to demonstrate the whole system, not for real robots. Everyone who uses it is told so.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

EMBEDDED_WARNING = (
    "no checkpoint configured: using the EMBEDDED DEMO MODEL (small, trained on synthetic panoramas "
    "only; NOT for real robots). For real metric depth set the checkpoint to the released DAP weights"
)


@dataclass(frozen=True)
class EmbeddedModel:
    weights: Path
    config: Path
    input_size: tuple[int, int]  # the resolution it was trained at


def embedded_model() -> EmbeddedModel | None:
    """The packaged demo model, or None when this installation has none."""
    folder = Path(str(resources.files("dap_ros") / "assets" / "embedded"))
    weights, config = folder / "model.safetensors", folder / "config.json"
    if not (weights.is_file() and config.is_file()):
        return None
    meta_path = folder / "training.json"
    size = (256, 512)
    if meta_path.is_file():
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        size = (int(meta["input_height"]), int(meta["input_width"]))
    return EmbeddedModel(weights=weights, config=config, input_size=size)


def embedded_model_files() -> tuple[Path, Path] | None:
    """(weights, config JSON) of the packaged demo model, or None."""
    model = embedded_model()
    return None if model is None else (model.weights, model.config)
