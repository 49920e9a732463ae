"""The bundled demo sequence (dap_ros/assets/demo_sequence/, made by scripts/make_demo_sequence.py)."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np

from dap_ros.errors import DapError


def default_sequence_dir() -> Path:
    return Path(str(resources.files("dap_ros") / "assets" / "demo_sequence"))


@dataclass
class DemoFrame:
    index: int
    rgb: np.ndarray  # (H, W, 3) uint8
    gt_m: np.ndarray  # (H, W) float32 metres, NaN = no ground truth
    pose: dict = field(default_factory=dict)


@dataclass
class DemoSequence:
    folder: Path
    meta: dict
    frames: list[DemoFrame]

    @property
    def rate_hz(self) -> float:
        return float(self.meta.get("rate_hz", 5.0))

    @property
    def frame_id(self) -> str:
        return str(self.meta.get("frame_id", "camera"))


def load_sequence(folder: str | Path | None = None, max_frames: int | None = None) -> DemoSequence:
    """Read ``sequence.json``, ``rgb/NNN.jpg`` and ``gt/NNN.png`` (16-bit millimetres, 0 = unknown)."""
    from PIL import Image

    folder = Path(folder) if folder is not None else default_sequence_dir()
    meta_path = folder / "sequence.json"
    if not meta_path.is_file():
        raise DapError(f"demo sequence not found: {meta_path} (regenerate it: python scripts/make_demo_sequence.py)")
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    n = int(meta["frames"])
    if max_frames is not None:
        n = min(n, int(max_frames))
    scale = float(meta.get("gt_scale", 0.001))
    poses = {int(p["index"]): p for p in meta.get("poses", [])}
    frames = []
    for k in range(n):
        with Image.open(folder / "rgb" / f"{k:03d}.jpg") as im:
            rgb = np.asarray(im.convert("RGB"), dtype=np.uint8)
        with Image.open(folder / "gt" / f"{k:03d}.png") as im:
            raw = np.asarray(im).astype(np.float32)
        gt = np.where(raw > 0, raw * scale, np.nan).astype(np.float32)
        frames.append(DemoFrame(k, rgb, gt, poses.get(k, {})))
    if not frames:
        raise DapError(f"demo sequence {folder} has no frames")
    return DemoSequence(folder, meta, frames)
