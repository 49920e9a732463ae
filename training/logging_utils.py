"""Run logging: TensorBoard (optional: a warning when the package is absent), a metrics.jsonl that
is always written, console logging on rank 0, and the validation image panels."""
from __future__ import annotations

import json
import logging
import sys
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dap_ros.settings import IMAGENET_MEAN, IMAGENET_STD

log = logging.getLogger("training")


def setup_console(rank: int) -> None:
    """INFO on rank 0, warnings only on the others."""
    level = logging.INFO if rank == 0 else logging.WARNING
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(f"%(asctime)s [rank {rank}] %(message)s", "%H:%M:%S"))
    root = logging.getLogger("training")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False


class RunLogger:
    """Scalars and images to TensorBoard (``<out>/tb``) and scalars to ``<out>/metrics.jsonl``.

    Only rank 0 creates one (the others get ``enabled=False``). On resume at step S, records with
    step > S left by the interrupted run are dropped from metrics.jsonl and TensorBoard's
    ``purge_step`` hides them too, so every step appears exactly once.
    """

    def __init__(self, out_dir: str | Path, enabled: bool, tensorboard: bool, resume_step: int = 0) -> None:
        self.enabled = enabled
        self.writer = None
        self.jsonl = None
        if not enabled:
            return
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        path = out_dir / "metrics.jsonl"
        kept = []
        if path.exists():
            for line in path.read_text(encoding="utf-8").splitlines():
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:
                    continue  # a line cut by a kill
                if int(record.get("step", 0)) <= resume_step:
                    kept.append(line)
        path.write_text("".join(k + "\n" for k in kept), encoding="utf-8")
        self.jsonl = open(path, "a", encoding="utf-8")
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                warnings.warn(
                    "TensorBoard logging is off: the 'tensorboard' package is not installed "
                    "(pip install -e .[train]); metrics still go to metrics.jsonl",
                    RuntimeWarning,
                    stacklevel=2,
                )
            else:
                self.writer = SummaryWriter(str(out_dir / "tb"), purge_step=resume_step + 1 if resume_step else None)

    def scalars(self, step: int, values: Mapping[str, float], kind: str = "train") -> None:
        if not self.enabled:
            return
        record = {"step": step, "kind": kind, **{k: _plain(v) for k, v in values.items()}}
        self.jsonl.write(json.dumps(record) + "\n")
        self.jsonl.flush()
        if self.writer is not None:
            for key, value in values.items():
                if value is not None and np.isfinite(value):
                    self.writer.add_scalar(f"{kind}/{key}", value, step)

    def image(self, step: int, tag: str, image_hwc_uint8: np.ndarray) -> None:
        if self.enabled and self.writer is not None:
            self.writer.add_image(tag, image_hwc_uint8, step, dataformats="HWC")

    def close(self) -> None:
        if self.jsonl is not None:
            self.jsonl.close()
        if self.writer is not None:
            self.writer.close()


def _plain(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.item()
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    return value


def read_metrics(path: str | Path, kind: str = "train") -> list[dict]:
    """The records of metrics.jsonl of one kind ('train', 'val'), in order."""
    out = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        record = json.loads(line)
        if record.get("kind") == kind:
            out.append(record)
    return out


def _colorize(depth: np.ndarray, valid: np.ndarray, vmax: float) -> np.ndarray:
    """(H, W) official-unit depth -> uint8 RGB with a log-ish 'turbo' map; invalid pixels dark grey."""
    import matplotlib

    x = np.log1p(np.clip(depth, 0, None) * 100.0) / np.log1p(max(vmax, 1e-3) * 100.0)
    rgb = matplotlib.colormaps["turbo"](1.0 - np.clip(x, 0, 1))[..., :3]
    rgb[~valid] = 0.25
    return (rgb * 255).astype(np.uint8)


def depth_panel(image: torch.Tensor, pred_depth: torch.Tensor, pred_mask: torch.Tensor,
                gt_depth: torch.Tensor, valid: torch.Tensor) -> np.ndarray:
    """One (4H, W, 3) uint8 panel for one sample: input RGB, prediction (beyond-range pixels grey),
    ground truth (invalid grey), absolute relative error (0 black .. >= 0.5 white)."""
    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
    rgb = ((image.float().cpu() * std + mean).clamp(0, 1).permute(1, 2, 0).numpy() * 255).astype(np.uint8)
    pred = pred_depth.float().cpu()[0].numpy()
    in_range = (1.0 - pred_mask.float().cpu()[0].numpy()) > 0.5
    gt = gt_depth.float().cpu()[0].numpy()
    ok = valid.cpu()[0].numpy().astype(bool)
    vmax = float(gt[ok].max()) if ok.any() else 1.0
    err = np.where(ok, np.abs(pred - gt) / np.maximum(gt, 1e-3), 0.0)
    err_rgb = (np.repeat(np.clip(err / 0.5, 0, 1)[..., None], 3, axis=2) * 255).astype(np.uint8)
    return np.concatenate([rgb, _colorize(pred, in_range, vmax), _colorize(gt, ok, vmax), err_rgb], axis=0)
