"""Evaluation with the standard depth metrics, during training and as a standalone command.

The metrics are dap_ros.evaluation.metrics (the same code as the rosbag evaluation): the network's
output goes through the official post-processing (depth x 100 m; pixels whose range-mask says
"beyond range", i.e. ``1 - pred_mask <= 0.5``, become +Inf and are scored as 100 m), the ground
truth is range in metres with +Inf where the sample's ``beyond`` target is set and NaN where it is
not ``valid``. Reported numbers are per-frame means (the paper's protocol) plus the range-mask IoU.

    python -m training.evaluate --checkpoint runs/x/export/model_final.pth --model-config tiny \\
        --data '{"type": "synthetic", "num_samples": 16, "seed": 1, "height": 64, "width": 128}'
    python -m training.evaluate --config training/configs/smoke.yaml \\
        --checkpoint runs/smoke/checkpoints/best.pt [--ema] [--output metrics.json]
"""
from __future__ import annotations

import argparse
import contextlib
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from dap_ros.evaluation.metrics import MetricsAccumulator, frame_metrics
from dap_ros.settings import DEPTH_SCALE_M
from training.distributed import DistInfo, ShardSampler, all_gather_objects


def autocast_context(device: torch.device, amp: str):
    if amp == "none":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if amp == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)


def to_metric_arrays(pred: dict[str, torch.Tensor], batch: dict[str, Any], index: int,
                     mask_threshold: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """(prediction, ground truth) of sample ``index`` in metres, with the conventions of
    dap_ros.evaluation.metrics (+Inf beyond range, NaN unknown)."""
    depth = pred["pred_depth"][index, 0].float().cpu().numpy().astype(np.float64) * DEPTH_SCALE_M
    in_range = (1.0 - pred["pred_mask"][index, 0].float().cpu().numpy()) > mask_threshold
    pred_m = np.where(in_range, depth, np.inf)
    gt = batch["depth"][index, 0].float().cpu().numpy().astype(np.float64) * DEPTH_SCALE_M
    valid = batch["valid"][index, 0].cpu().numpy().astype(bool)
    beyond = batch["beyond"][index, 0].cpu().numpy() > 0.5
    gt_m = np.where(valid, gt, np.where(beyond, np.inf, np.nan))
    return pred_m, gt_m


@torch.no_grad()
def evaluate_model(
    model: nn.Module,
    dataset: torch.utils.data.Dataset,
    dist: DistInfo,
    batch_size: int = 2,
    amp: str = "none",
    max_batches: int = 0,
    num_images: int = 0,
    num_workers: int = 0,
) -> tuple[dict[str, float | None], list[tuple]]:
    """Metrics over ``dataset`` (sharded across ranks, gathered on every rank) and up to
    ``num_images`` (image, pred_depth, pred_mask, depth, valid) tuples from rank 0 for panels."""
    from training.data import collate

    limit = max_batches * batch_size * dist.world_size if max_batches > 0 else 0
    sampler = ShardSampler(len(dataset), dist.rank, dist.world_size, limit)
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=batch_size, sampler=sampler, collate_fn=collate, num_workers=num_workers
    )
    was_training = model.training
    model.eval()
    frames, panels = [], []
    for batch in loader:
        image = batch["image"].to(dist.device, non_blocking=True)
        with autocast_context(dist.device, amp):
            pred = model(image)
        for i in range(image.shape[0]):
            pred_m, gt_m = to_metric_arrays(pred, batch, i)
            frames.append(frame_metrics(pred_m, gt_m, DEPTH_SCALE_M, error_bins=None))
            if len(panels) < num_images:
                panels.append((batch["image"][i], pred["pred_depth"][i], pred["pred_mask"][i],
                               batch["depth"][i], batch["valid"][i]))
    model.train(was_training)
    accumulator = MetricsAccumulator(error_bins=None)
    for rank_frames in all_gather_objects(frames, dist):
        for frame in rank_frames:
            accumulator.add(frame)
    summary = accumulator.summary()
    out: dict[str, float | None] = dict(summary["frame_mean"])
    out["mask_iou"] = summary["range_mask"]["iou"]
    out["mask_accuracy"] = summary["range_mask"]["accuracy"]
    out["frames"] = summary["frames_evaluated"]
    return out, panels


def _load_weights(model: nn.Module, checkpoint: str, use_ema: bool) -> None:
    """An exported official-layout file, or a training checkpoint (model or EMA weights)."""
    from dap_ros.model.checkpoint import load_state_dict_strict, read_state_dict

    state = None
    if not checkpoint.endswith(".safetensors"):
        raw = torch.load(checkpoint, map_location="cpu", weights_only=True)
        if isinstance(raw, dict) and raw.get("format", "").startswith("dap_ros.training"):
            if use_ema:
                if raw.get("ema") is None:
                    raise SystemExit(f"error: {checkpoint} holds no EMA weights (train.ema.enabled was off)")
                state = {k: v for k, v in model.state_dict().items()}
                state.update(raw["ema"]["shadow"])
            else:
                state = raw["model"]
    if state is None:
        state = read_state_dict(checkpoint)
    load_state_dict_strict(model, state, source=f"checkpoint {checkpoint}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.evaluate", description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", help="a training YAML: model.config and data.val are taken from it")
    parser.add_argument("--checkpoint", required=True, help="exported model (.pth/.safetensors) or training checkpoint")
    parser.add_argument("--model-config", help="preset name or JSON (default: the config's model.config)")
    parser.add_argument("--data", help="dataset spec as JSON/YAML text or a path to a YAML file (default: data.val)")
    parser.add_argument("--ema", action="store_true", help="use the EMA weights of a training checkpoint")
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--max-batches", type=int, default=0)
    parser.add_argument("--amp", choices=("none", "bf16", "fp16"), default="none")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--output", help="write the metrics as JSON here")
    parser.add_argument("overrides", nargs="*", help="key=value overrides of --config")
    args = parser.parse_args(argv)

    import yaml

    from dap_ros.model import build_model
    from training.config import TrainConfigError, load_config
    from training.data import build_dataset
    from training.distributed import cleanup, setup_distributed

    try:
        cfg = load_config(args.config, args.overrides) if args.config else None
    except TrainConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    model_config = args.model_config or (cfg.model.config if cfg else "tiny")
    if args.data:
        text = Path(args.data).read_text() if Path(args.data).is_file() else args.data
        spec = yaml.safe_load(text)
    else:
        spec = cfg.data.val if cfg else None
    if not isinstance(spec, dict) or "type" not in spec:
        print("error: no evaluation data: pass --data SPEC or a --config with data.val", file=sys.stderr)
        return 2
    dist = setup_distributed(args.device)
    try:
        model = build_model(model_config if not isinstance(model_config, dict) else dict(model_config))
        _load_weights(model, args.checkpoint, args.ema)
        model.to(dist.device)
        metrics, _ = evaluate_model(
            model, build_dataset(dict(spec)), dist, args.batch_size, args.amp, args.max_batches
        )
    finally:
        cleanup()
    if dist.is_main:
        text = json.dumps(metrics, indent=2)
        print(text)
        if args.output:
            Path(args.output).write_text(text + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
