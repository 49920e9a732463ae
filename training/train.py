"""Train or fine-tune DAP. One process or many, same command:

    python -m training.train --config training/configs/smoke.yaml [key.path=value ...]
    torchrun --nproc_per_node 8 -m training.train --config training/configs/vitl_finetune.yaml

The loop below reads top to bottom: config -> processes -> model (+ init) -> optimizer, schedule,
scaler, EMA -> data -> resume -> steps (forward, loss, backward, clip, step, log, validate,
checkpoint) -> export. See training/README.md.
"""
from __future__ import annotations

import argparse
import contextlib
import logging
import math
import random
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel as DDP

from dap_ros.errors import DapError
from dap_ros.model import build_model
from dap_ros.model.checkpoint import load_state_dict_strict, read_state_dict
from training import checkpointing as ckpt
from training.config import Config, TrainConfigError, dump_config, load_config
from training.distributed import (
    DistInfo,
    ResumableBatchSampler,
    all_gather_objects,
    all_reduce_mean,
    barrier,
    broadcast_object,
    cleanup,
    setup_distributed,
)
from training.evaluate import autocast_context, evaluate_model
from training.logging_utils import RunLogger, depth_panel, setup_console
from training.optim import ModelEMA, WarmupSchedule, build_optimizer, freeze_unused_parameters, trainable_parameters

log = logging.getLogger("training")


# ------------------------------------------------------------------------------------------------
# Setup helpers
# ------------------------------------------------------------------------------------------------
def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def rope_jitter_seed(seed: int, rank: int, step: int) -> int:
    """Seed of the RoPE coordinate-scale draws of optimizer step ``step`` on ``rank``: like the data
    augmentations, a pure function of the run seed and the position, so resuming is exact."""
    return int(np.random.SeedSequence([seed, rank, step, 0x2095]).generate_state(1, np.uint64)[0])


def init_weights(model: torch.nn.Module, model_cfg: Config) -> str:
    """random | dinov3 (backbone only) | dap / checkpoint (whole network, strict)."""
    if model_cfg.init == "random":
        return "random initialization"
    path = model_cfg.checkpoint
    if model_cfg.init in ("dap", "checkpoint"):
        load_state_dict_strict(model, read_state_dict(path), source=f"model.checkpoint {path}")
        return f"all weights from {path}"
    # dinov3: a DINOv3 ViT file, keys = the official core.pretrained.model.* without that prefix
    state = ckpt.dinov3_backbone_state(read_state_dict(path))
    backbone = {k[len("backbone."):]: v for k, v in state.items()}
    load_state_dict_strict(model.backbone, backbone, source=f"model.checkpoint {path}",
                           hint="It must be a DINOv3 backbone of the configured architecture (model.config).")
    return f"backbone from DINOv3 file {path}, heads random"


def build_train_set(data_cfg: Config):
    """data.train (one spec or a list) + data.extra_train (data engine) -> one dataset."""
    from training.data import build_dataset

    specs = data_cfg.train if isinstance(data_cfg.train, list) else [data_cfg.train]
    specs = [dict(s) for s in specs]
    for extra in data_cfg.extra_train:  # pseudo-labels: same size as the main data unless given
        extra = dict(extra)
        for key in ("height", "width"):
            if key in specs[0]:
                extra.setdefault(key, specs[0][key])
        specs.append(extra)
    return build_dataset(specs[0] if len(specs) == 1 else specs)


def to_device(batch: dict, device: torch.device) -> dict:
    return {k: v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}


def parameter_checksum(model: torch.nn.Module) -> float:
    with torch.no_grad():
        return float(sum(p.double().sum().item() + p.double().abs().sum().item() for p in model.parameters()))


# ------------------------------------------------------------------------------------------------
# Training
# ------------------------------------------------------------------------------------------------
def train(cfg: Config, dist: DistInfo) -> dict:
    out_dir = Path(cfg.run.out_dir)
    setup_console(dist.rank)
    if cfg.train.threads > 0:
        torch.set_num_threads(cfg.train.threads)
    if cfg.train.deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
    device = dist.device
    amp = cfg.train.amp
    if amp == "fp16" and device.type != "cuda":
        raise TrainConfigError("train.amp=fp16 needs CUDA; use bf16 or none on CPU")

    # ---- model ------------------------------------------------------------------------------
    seed_everything(cfg.run.seed)  # same initial weights on every rank (DDP also broadcasts rank 0's)
    model = build_model(cfg.model.config if isinstance(cfg.model.config, str) else dict(cfg.model.config))
    how = init_weights(model, cfg.model)
    frozen = freeze_unused_parameters(model)
    model.backbone.gradient_checkpointing = cfg.model.gradient_checkpointing
    rope = model.backbone.rope_embed
    rope.set_rescale_coords(cfg.model.rope_rescale_coords)  # training-mode only (DINOv3 rescale_coords)
    model.to(device)
    model.train()
    n_params = sum(p.numel() for p in model.parameters())
    n_train = sum(p.numel() for p in trainable_parameters(model))
    log.info("model: %.1f M parameters (%.1f M trained, %d frozen tensors: unused in forward); %s",
             n_params / 1e6, n_train / 1e6, len(frozen), how)
    if rope.rescale_coords is not None:
        log.info("RoPE coordinates rescaled in training mode by a log-uniform factor in [1/%g, %g]",
                 rope.rescale_coords, rope.rescale_coords)

    # ---- optimizer, schedule, AMP scaler, EMA -----------------------------------------------------
    max_steps, accum = cfg.train.max_steps, cfg.optim.grad_accum
    optimizer = build_optimizer(model, cfg.optim)
    schedule = WarmupSchedule(optimizer, cfg.schedule, cfg.schedule.total_steps or max_steps)
    scaler = torch.amp.GradScaler(device.type, enabled=(amp == "fp16"))
    ema = ModelEMA(model, cfg.train.ema.decay) if cfg.train.ema.enabled else None

    # ---- data ---------------------------------------------------------------------------------
    from training.data import collate

    train_set = build_train_set(cfg.data)
    sampler = ResumableBatchSampler(
        len(train_set), cfg.data.batch_size, dist.rank, dist.world_size, cfg.run.seed, cfg.data.shuffle
    )
    val_set = None
    if cfg.data.val is not None:
        from training.data import build_dataset

        val_set = build_dataset(dict(cfg.data.val))
    global_batch = cfg.data.batch_size * dist.world_size * accum
    log.info("data: %d training samples, %d batches/epoch/process, global batch %d; %s",
             len(train_set), sampler.batches_per_epoch, global_batch,
             f"{len(val_set)} validation samples" if val_set is not None else "no validation set")

    # ---- resume -------------------------------------------------------------------------------
    manager = ckpt.CheckpointManager(out_dir / "checkpoints", cfg.train.keep_last, cfg.train.best_mode)
    resume_path = None
    if dist.is_main:
        if cfg.run.resume == "auto":
            resume_path = manager.latest()
        elif cfg.run.resume != "never":
            resume_path = Path(cfg.run.resume)
    resume_path = broadcast_object(str(resume_path) if resume_path else None, dist)
    step, epoch, batch_in_epoch, rng_state = 0, 0, 0, None
    if resume_path is not None:
        state = ckpt.load_checkpoint(resume_path)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        schedule.load_state_dict(state["schedule"])
        scaler.load_state_dict(state["scaler"])
        if ema is not None and state.get("ema") is not None:
            ema.load_state_dict(state["ema"])
        step = int(state["step"])
        same_layout = state["world_size"] == dist.world_size and state["batch_size"] == cfg.data.batch_size
        if same_layout:
            epoch, batch_in_epoch = int(state["epoch"]), int(state["batch_in_epoch"])
            rng_state = state["rng"][dist.rank]
        else:
            epoch, batch_in_epoch = int(state["epoch"]) + 1, 0
            log.warning("resuming with a different world size / batch size: the data order restarts at "
                        "epoch %d and RNG streams are reseeded (the run is no longer bit-exact)", epoch)
        log.info("resumed from %s at step %d (epoch %d, batch %d)", resume_path, step, epoch, batch_in_epoch)
        del state
    if dist.is_main:
        out_dir.mkdir(parents=True, exist_ok=True)
        dump_config(cfg, out_dir / "config.yaml")
    logger = RunLogger(out_dir, dist.is_main, cfg.logging.tensorboard, resume_step=step)

    # ---- DDP ------------------------------------------------------------------------------------
    # Unused parameters (the deepest fusion block's skip_unit, mask_token) are frozen above, so
    # DDP needs no find_unused_parameters traversal. Buffers are constants: no broadcast needed.
    ddp_model = model
    if dist.distributed:
        ddp_model = DDP(model, device_ids=[device.index] if device.type == "cuda" else None,
                        broadcast_buffers=False)
    loss_fn = _build_loss(cfg)

    # ---- the data stream: deterministic in (seed, epoch), resumable mid-epoch ----------------------
    def batches():
        nonlocal epoch, batch_in_epoch
        while True:
            sampler.set_epoch(epoch, batch_in_epoch)
            if hasattr(train_set, "set_epoch"):  # augmentation draws are a function of (seed, epoch, index)
                train_set.set_epoch(epoch)
            loader = torch.utils.data.DataLoader(
                train_set, batch_sampler=sampler, collate_fn=collate, num_workers=cfg.data.num_workers,
                pin_memory=device.type == "cuda",
                generator=torch.Generator().manual_seed(cfg.run.seed * 7919 + epoch),  # never the global RNG
            )
            for batch in loader:
                batch_in_epoch += 1
                yield batch
            epoch, batch_in_epoch = epoch + 1, 0

    stream = batches()
    seed_everything(cfg.run.seed * 1000 + dist.rank + 1)  # per-rank augmentation streams
    if rng_state is not None:
        ckpt.restore_rng_state(rng_state, device)

    def save_checkpoint(metric: float | None) -> None:
        rng_all = all_gather_objects(ckpt.capture_rng_state(device), dist)
        if not dist.is_main:
            return
        at_end = batch_in_epoch == sampler.batches_per_epoch  # the next batch opens the next epoch
        state = {
            "format": ckpt.FORMAT,
            "step": step,
            "epoch": epoch + 1 if at_end else epoch,
            "batch_in_epoch": 0 if at_end else batch_in_epoch,
            "world_size": dist.world_size,
            "batch_size": cfg.data.batch_size,
            "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
            "optimizer": optimizer.state_dict(),
            "schedule": schedule.state_dict(),
            "scaler": scaler.state_dict(),
            "ema": ema.state_dict() if ema is not None else None,
            "rng": rng_all,
            "config": cfg.to_dict(),
            "model_config": model.config.to_dict(),
            "metric": {cfg.train.best_metric: metric} if metric is not None else {},
        }
        manager.save(state, step, cfg.train.best_metric, metric)

    # ---- steps ------------------------------------------------------------------------------------
    progress = None
    if dist.is_main and cfg.logging.progress:
        from tqdm import tqdm

        progress = tqdm(total=max_steps, initial=step, desc="train", dynamic_ncols=True, file=sys.stderr)
    t_last, steps_since = time.perf_counter(), 0
    last_loss = math.nan
    while step < max_steps:
        # forward / backward over grad_accum micro-batches; DDP syncs gradients on the last one
        parts_sum: dict[str, torch.Tensor] = {}
        total_sum = torch.zeros((), device=device)
        if rope.rescale_coords is not None:  # one scale per micro-batch forward, reproducible per step
            rope.seed_jitter(rope_jitter_seed(cfg.run.seed, dist.rank, step))
        for micro in range(accum):
            batch = to_device(next(stream), device)
            sync = micro == accum - 1 or not dist.distributed
            with contextlib.nullcontext() if sync else ddp_model.no_sync():
                with autocast_context(device, amp):
                    pred = ddp_model(batch["image"])
                pred = {k: v.float() for k, v in pred.items()}  # losses in fp32
                loss, parts = loss_fn(pred, batch)
                scaler.scale(loss / accum).backward()
            total_sum += loss.detach() / accum
            for name, value in parts.items():
                value = torch.as_tensor(value, device=device).detach().float()
                parts_sum[name] = parts_sum.get(name, 0) + value / accum

        # clip, step, schedule, EMA
        scaler.unscale_(optimizer)
        max_norm = cfg.optim.grad_clip if cfg.optim.grad_clip > 0 else float("inf")
        grad_norm = torch.nn.utils.clip_grad_norm_(trainable_parameters(model), max_norm)
        scaler.step(optimizer)
        scaler.update()
        optimizer.zero_grad(set_to_none=True)
        lrs = schedule.lrs()  # the LRs this step used
        schedule.step()
        if ema is not None:
            ema.update(model)
        step += 1
        steps_since += 1
        if progress is not None:
            progress.update(1)

        # log (the all-reduce makes every rank take part at the same steps)
        if step % cfg.train.log_every == 0 or step == max_steps:
            names = sorted(parts_sum)
            stats = torch.stack([total_sum, grad_norm.float().to(device)] + [parts_sum[n] for n in names])
            stats = all_reduce_mean(stats, dist).tolist()
            now = time.perf_counter()
            rate = steps_since / max(now - t_last, 1e-9)
            t_last, steps_since = now, 0
            last_loss = stats[0]
            if not math.isfinite(last_loss) and amp != "fp16":
                raise FloatingPointError(f"loss is {last_loss} at step {step}; lower the LR or check the data")
            record = {"loss": stats[0], "grad_norm": stats[1], **{f"loss_{n}": v for n, v in zip(names, stats[2:])},
                      **{f"lr_{g}": lr for g, lr in lrs.items()}, "steps_per_s": rate,
                      "samples_per_s": rate * global_batch, "epoch": epoch}
            if amp == "fp16":
                record["amp_scale"] = scaler.get_scale()
            if device.type == "cuda":
                record["gpu_mem_gb"] = torch.cuda.max_memory_allocated(device) / 2**30
            logger.scalars(step, record, "train")
            if progress is not None:
                progress.set_postfix(loss=f"{stats[0]:.4f}", lr=f"{max(lrs.values()):.2e}")

        # validate
        metric = None
        val_now = val_set is not None and (
            step == max_steps or (cfg.train.val_every > 0 and step % cfg.train.val_every == 0)
        )
        if val_now:
            metrics, panels = evaluate_model(
                model, val_set, dist, cfg.data.val_batch_size, amp, cfg.train.val_max_batches,
                cfg.logging.val_images if dist.is_main else 0, cfg.data.num_workers,
            )
            metric = metrics.get(cfg.train.best_metric)
            logger.scalars(step, metrics, "val")
            for i, panel in enumerate(panels):
                logger.image(step, f"val/panel_{i}", depth_panel(*panel))
            log.info("step %d validation: %s", step,
                     ", ".join(f"{k} {v:.4f}" for k, v in metrics.items() if isinstance(v, float)))

        # checkpoint
        if step % cfg.train.ckpt_every == 0 or step == max_steps or val_now:
            save_checkpoint(metric)

    if progress is not None:
        progress.close()

    # ---- the end: ranks must agree; export in the released layout ---------------------------------------
    sums = all_gather_objects(parameter_checksum(model), dist)
    result = {"step": step, "loss": last_loss, "rank_checksums": sums, "train_samples": len(train_set),
              "world_size": dist.world_size}
    if dist.is_main:
        if len(set(sums)) != 1:
            raise RuntimeError(f"ranks disagree on the weights after training: {sums}")
        export = out_dir / "export"
        ckpt.export_official(model.state_dict(), export / "model_final.pth", model.config.to_dict())
        if ema is not None:
            ckpt.export_official(ema.model_state(model), export / "model_final_ema.pth", model.config.to_dict())
        best = manager.folder / "best.pt"
        if best.is_file():
            ckpt.export_official(ckpt.load_checkpoint(best)["model"], export / "model_best.pth",
                                 model.config.to_dict())
        ckpt.atomic_write_text(_json(result), out_dir / "final.json")
        log.info("done: step %d, loss %.5f; weights in the released layout: %s", step, last_loss,
                 export / "model_final.pth")
    logger.close()
    barrier(dist)
    return result


def _build_loss(cfg: Config):
    from training.losses import DAPLoss

    weights = dict(cfg.loss.weights) if cfg.loss.weights is not None else None
    return DAPLoss(weights, distortion=cfg.loss.distortion, silog_lambda=cfg.loss.silog_lambda)


def _json(obj) -> str:
    import json

    return json.dumps(obj, indent=2) + "\n"


# ------------------------------------------------------------------------------------------------
# Command line
# ------------------------------------------------------------------------------------------------
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m training.train",
        description="Train / fine-tune DAP (one process, or many under torchrun).",
        epilog="Overrides: dotted keys of the config, e.g. optim.lr_heads=1e-4 train.max_steps=200 "
        "data.train.num_samples=64 (values are parsed as YAML).",
    )
    parser.add_argument("--config", required=True, help="YAML file under training/configs/")
    parser.add_argument("overrides", nargs="*", help="key.path=value")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        cfg = load_config(args.config, args.overrides)
    except TrainConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    dist = setup_distributed(cfg.train.device)
    try:
        train(cfg, dist)
    except (TrainConfigError, DapError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
