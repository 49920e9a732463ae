"""The training loop end to end on CPU: smoke run (loss decreases, checkpoint + export load),
2-process gloo DDP under torchrun, kill-and-resume exactness, the standalone evaluation."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from dap_ros.model import load_model
from training.checkpointing import load_checkpoint
from training.logging_utils import read_metrics

REPO = Path(__file__).resolve().parents[2]
SMOKE = REPO / "training" / "configs" / "smoke.yaml"
# 32x64 panoramas, one thread: small and deterministic (bitwise run to run on one CPU thread)
TINY = [
    "data.train.height=32", "data.train.width=64", "data.val.height=32", "data.val.width=64",
    "train.threads=1", "train.deterministic=true", "logging.progress=false",
]


def _env() -> dict:
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONPATH=str(REPO))
    env.pop("WORLD_SIZE", None)
    return env


def _run(args: list[str], timeout: float = 240) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, *args], cwd=REPO, env=_env(), capture_output=True, text=True,
                          timeout=timeout)
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stderr[-3000:]}"
    return proc


def _train_losses(out: Path) -> list[tuple[int, float]]:
    return [(r["step"], r["loss"]) for r in read_metrics(out / "metrics.jsonl", "train")]


def test_smoke_run_learns_and_writes_loadable_checkpoints(tmp_path):
    from training.train import main

    out = tmp_path / "smoke"
    t0 = time.perf_counter()
    assert main(["--config", str(SMOKE), f"run.out_dir={out}", *TINY, "data.train.num_samples=16",
                 "data.batch_size=2", "data.val.num_samples=4", "train.val_every=0"]) == 0
    elapsed = time.perf_counter() - t0
    steps = _train_losses(out)
    assert [s for s, _ in steps] == list(range(1, 51))
    losses = [v for _, v in steps]
    first, last = sum(losses[:10]) / 10, sum(losses[-10:]) / 10
    print(f"smoke: 50 steps in {elapsed:.1f} s; mean loss first 10 {first:.3f}, last 10 {last:.3f}")
    assert last < 0.7 * first, (first, last)
    # a training checkpoint, the exported official-layout file, and best: all load with load_model
    ckpts = sorted((out / "checkpoints").glob("step_*.pt"))
    assert [p.name for p in ckpts] == ["step_00000025.pt", "step_00000050.pt"]
    for path in (ckpts[-1], out / "export" / "model_final.pth", out / "export" / "model_best.pth"):
        model = load_model(path, "tiny")
        with torch.no_grad():
            pred = model(torch.zeros(1, 3, 32, 64))
        assert pred["pred_depth"].shape == (1, 1, 32, 64)
    final = load_model(out / "export" / "model_final.pth", str(out / "export" / "model_final.json"))
    trained = load_checkpoint(ckpts[-1])["model"]
    assert all(torch.equal(final.state_dict()[k], v) for k, v in trained.items())
    val = read_metrics(out / "metrics.jsonl", "val")
    assert [r["step"] for r in val] == [50] and 0 < val[0]["abs_rel"] < 100 and val[0]["frames"] == 4
    assert (out / "tb").is_dir() and any((out / "tb").iterdir())
    # the standalone evaluation gives the same numbers from the exported file
    from training.evaluate import main as evaluate

    metrics_path = tmp_path / "metrics.json"
    assert evaluate(["--config", str(SMOKE), "--checkpoint", str(out / "export" / "model_final.pth"),
                     "--output", str(metrics_path), *TINY[:4], "data.val.num_samples=4", "--batch-size", "2"]) == 0
    standalone = json.loads(metrics_path.read_text())
    for key in ("abs_rel", "rmse", "delta1", "mask_iou"):
        assert standalone[key] == pytest.approx(val[0][key], rel=1e-5, abs=1e-7), key


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_process_gloo_torchrun_keeps_ranks_in_sync(tmp_path):
    out = tmp_path / "ddp"
    proc = _run(["-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
                 "--master_port", str(_free_port()), "-m", "training.train", "--config", str(SMOKE),
                 f"run.out_dir={out}", *TINY, "train.max_steps=4", "train.ckpt_every=2", "data.train.num_samples=8",
                 "data.batch_size=2", "data.val.num_samples=3", "data.val_batch_size=1", "train.log_every=1"])
    final = json.loads((out / "final.json").read_text())
    sums = final["rank_checksums"]
    assert len(sums) == 2 and sums[0] == sums[1]  # the loop also raises when they differ
    state = load_checkpoint(out / "checkpoints" / "step_00000004.pt")
    assert state["world_size"] == 2 and len(state["rng"]) == 2
    assert state["rng"][0]["torch"].tolist() != state["rng"][1]["torch"].tolist()  # per-rank streams
    assert state["epoch"] == 2 and state["batch_in_epoch"] == 0  # 8 samples / (2 x 2) = 2 batches per epoch
    assert [s for s, _ in _train_losses(out)] == [1, 2, 3, 4]
    assert "resumed" not in proc.stderr
    load_model(out / "export" / "model_final.pth", "tiny")


def test_kill_and_resume_is_exact(tmp_path):
    """SIGKILL a run after its first checkpoint, start it again: same weights and loss trajectory
    as an uninterrupted run, every step logged exactly once."""
    args = [f"{k}" for k in [*TINY, "train.max_steps=12", "train.ckpt_every=4", "train.keep_last=5",
                             "data.train.num_samples=10", "data.batch_size=2", "data.val=null", "train.log_every=1",
                             "train.ema.enabled=true", "schedule.warmup_steps=3"]]
    base = ["-m", "training.train", "--config", str(SMOKE)]
    _run([*base, f"run.out_dir={tmp_path / 'straight'}", *args])

    out = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, *base, f"run.out_dir={out}", *args], cwd=REPO, env=_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    first = out / "checkpoints" / "step_00000004.pt"
    log = out / "metrics.jsonl"

    def past_first_checkpoint() -> bool:  # checkpoint 4 written and step 5 done: kill between checkpoints
        return first.exists() and log.exists() and '"step": 5,' in log.read_text()

    deadline = time.monotonic() + 180
    while not past_first_checkpoint() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)  # polling the file system with a deadline, not synchronizing by sleeping
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    assert first.exists(), proc.stderr.read()[-2000:]
    assert not (out / "final.json").exists(), "the run finished before it could be killed"
    assert proc.returncode == -signal.SIGKILL
    done_before = [s for s, _ in _train_losses(out)]
    assert done_before and max(done_before) < 12

    resumed = _run([*base, f"run.out_dir={out}", *args])
    assert "resumed from" in resumed.stderr
    straight, again = _train_losses(tmp_path / "straight"), _train_losses(out)
    assert [s for s, _ in again] == list(range(1, 13))  # no lost or repeated step
    assert max(abs(a - b) for (_, a), (_, b) in zip(straight, again)) <= 1e-6
    w1 = torch.load(tmp_path / "straight" / "export" / "model_final.pth", weights_only=True)
    w2 = torch.load(out / "export" / "model_final.pth", weights_only=True)
    diff = max((w1[k].double() - w2[k].double()).abs().max().item() for k in w1)
    e1 = torch.load(tmp_path / "straight" / "export" / "model_final_ema.pth", weights_only=True)
    e2 = torch.load(out / "export" / "model_final_ema.pth", weights_only=True)
    ema_diff = max((e1[k].double() - e2[k].double()).abs().max().item() for k in e1)
    print(f"kill-and-resume: killed after step {max(done_before)}, max |weight diff| {diff:g}, EMA {ema_diff:g}")
    assert diff <= 1e-6 and ema_diff <= 1e-6


def test_bf16_autocast_gradient_checkpointing_accumulation_adamw(tmp_path):
    """The other code paths of the step: bf16 autocast (CPU), ViT gradient checkpointing,
    2 micro-batches per step, AdamW with weight decay, constant schedule; resume='never'."""
    from training.train import main

    out = tmp_path / "variants"
    assert main(["--config", str(SMOKE), f"run.out_dir={out}", *TINY[:4], "train.threads=1",
                 "logging.progress=false", "train.amp=bf16", "model.gradient_checkpointing=true",
                 "optim.grad_accum=2", "optim.name=adamw", "optim.weight_decay=0.01", "schedule.name=constant",
                 "train.max_steps=3", "data.train.num_samples=8", "data.batch_size=2", "data.val.num_samples=2",
                 "logging.tensorboard=false", "run.resume=never"]) == 0
    records = read_metrics(out / "metrics.jsonl", "train")
    assert [r["step"] for r in records] == [1, 2, 3]
    assert all(r["loss"] == r["loss"] for r in records)  # finite
    state = load_checkpoint(out / "checkpoints" / "step_00000003.pt")
    assert state["batch_in_epoch"] == 2 and state["epoch"] == 1  # 3 steps x 2 micro-batches, 4 per epoch
    assert not (out / "tb").exists()


def test_init_from_dinov3_backbone_file_and_bad_files(tmp_path):
    from dap_ros.errors import CheckpointError
    from dap_ros.model import build_model
    from training.checkpointing import to_official_state_dict
    from training.config import load_config
    from training.train import init_weights

    torch.manual_seed(1)
    donor = build_model("tiny")
    prefix = "core.pretrained.model."
    backbone = {k[len(prefix):]: v for k, v in to_official_state_dict(donor).items() if k.startswith(prefix)}
    torch.save(backbone, tmp_path / "dinov3.pth")
    cfg = load_config(SMOKE, ["model.init=dinov3", f"model.checkpoint={tmp_path / 'dinov3.pth'}"])
    model = build_model("tiny")
    init_weights(model, cfg.model)
    for k, v in model.state_dict().items():
        if k.startswith("backbone."):
            assert torch.equal(v, donor.state_dict()[k]), k  # backbone copied
    assert not torch.equal(model.depth_head.projections[0].weight, donor.depth_head.projections[0].weight)
    torch.save({k: v for k, v in backbone.items() if "blocks.0." not in k}, tmp_path / "partial.pth")
    cfg = load_config(SMOKE, ["model.init=dinov3", f"model.checkpoint={tmp_path / 'partial.pth'}"])
    with pytest.raises(Exception, match="missing"):
        init_weights(build_model("tiny"), cfg.model)
    cfg = load_config(SMOKE, ["model.init=dap", f"model.checkpoint={tmp_path / 'dinov3.pth'}"])
    with pytest.raises(CheckpointError):  # a backbone file is not a whole DAP checkpoint: strict
        init_weights(build_model("tiny"), cfg.model)


def test_schedule_total_steps_stops_a_run_early_on_the_same_lr_curve(tmp_path):
    """schedule.total_steps lays the cosine over more steps than the run takes (embedded stage 2)."""
    from training.train import main

    common = ["--config", str(SMOKE), *TINY, "data.train.num_samples=8", "data.batch_size=2",
              "data.val=null", "train.log_every=1", "schedule.name=cosine", "schedule.warmup_steps=0",
              "schedule.min_lr_ratio=0.1"]
    full, early = tmp_path / "full", tmp_path / "early"
    assert main([*common, f"run.out_dir={full}", "train.max_steps=8"]) == 0
    assert main([*common, f"run.out_dir={early}", "train.max_steps=4", "schedule.total_steps=8"]) == 0
    lr_full = [r["lr_heads"] for r in read_metrics(full / "metrics.jsonl", "train")]
    lr_early = [r["lr_heads"] for r in read_metrics(early / "metrics.jsonl", "train")]
    assert len(lr_full) == 8 and len(lr_early) == 4
    assert lr_early == pytest.approx(lr_full[:4])
    assert lr_early[-1] > 2 * lr_full[-1]  # stopped half-way down the cosine, not at its floor
    assert (early / "export" / "model_final.pth").is_file()
