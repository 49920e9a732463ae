"""Package a trained run as the embedded demo model (dap_ros/assets/embedded/) and evaluate it.

    python -m training.train --config training/configs/embedded.yaml          # stage 1, ~1 h on a 2-core CPU
    python -m training.train --config training/configs/embedded_stage2.yaml   # stage 2
    python -m training.train --config training/configs/embedded_stage3.yaml   # stage 3
    python -m training.make_embedded --run runs/embedded_stage3               # this script

Steps:

1. take the final checkpoint of the run; compare its raw and EMA weights on the run's validation
   set (data.val, seed 9001; never the test sets) and keep the better by AbsRel;
2. write ``model.safetensors`` (native parameter names, fp16 weights, fp32 buffers; loadable with
   ``dap_ros.model.load_model`` strictly), ``config.json`` (architecture keys only, docs/conventions.md) and
   ``training.json`` (input size, run, step, selection) into ``--out``;
3. evaluate the packaged file (through ``load_model``, as the node uses it) on the held-out
   synthetic test sets (data seeds 424242 indoor and 525252 outdoor, never used in training or
   validation) and on the real Matterport3D sample (``--real-sample``), and write
   ``eval_metrics.json`` beside the weights. MODEL_CARD.md quotes these numbers.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO / "dap_ros" / "assets" / "embedded"
DEFAULT_REAL = REPO.parent / "shared" / "reference" / "real_sample"
TEST_SEEDS = {"indoor": 424242, "outdoor": 525252}


def test_spec(kind: str, height: int, width: int, num_samples: int) -> dict:
    """The held-out synthetic test set of ``kind`` (its data seed was never used in training)."""
    return {"type": "synthetic", "num_samples": num_samples, "seed": TEST_SEEDS[kind], "height": height,
            "width": width, "indoor_fraction": 1.0 if kind == "indoor" else 0.0, "augment": False}


def _evaluate(model, spec: dict, batch_size: int = 8) -> dict:
    from training.data import build_dataset
    from training.distributed import DistInfo
    from training.evaluate import evaluate_model

    dist = DistInfo(rank=0, local_rank=0, world_size=1, device=torch.device("cpu"), backend=None)
    metrics, _ = evaluate_model(model, build_dataset(dict(spec)), dist, batch_size=batch_size)
    return metrics


def select_weights(run: Path, cfg: dict, model_config: dict) -> tuple[dict, dict]:
    """(state dict, selection info): raw vs EMA weights of the last checkpoint, by validation AbsRel."""
    from dap_ros.model import build_model
    from training.checkpointing import CheckpointManager, load_checkpoint

    manager = CheckpointManager(run / "checkpoints")
    last = manager.latest()
    if last is None:
        raise SystemExit(f"no checkpoint in {run / 'checkpoints'}")
    raw = load_checkpoint(last)
    candidates = {"model": raw["model"]}
    if raw.get("ema") is not None:
        ema = dict(raw["model"])
        ema.update(raw["ema"]["shadow"])
        candidates["ema"] = ema
    val_spec = cfg["data"]["val"]
    results = {}
    for name, state in candidates.items():
        model = build_model(model_config)
        model.load_state_dict(state, strict=True)
        results[name] = _evaluate(model, val_spec)
        print(f"validation ({name} weights, step {raw['step']}): AbsRel {results[name]['abs_rel']:.4f}, "
              f"delta1 {results[name]['delta1']:.4f}, mask IoU {results[name]['mask_iou']}", flush=True)
    best = min(results, key=lambda k: results[k]["abs_rel"])
    info = {"checkpoint": str(last.relative_to(REPO) if last.is_relative_to(REPO) else last), "step": int(raw["step"]),
            "weights": best, "validation": {k: {m: v for m, v in r.items()} for k, r in results.items()},
            "validation_set": val_spec}
    return candidates[best], info


def write_package(state: dict, model_config: dict, out: Path, info: dict, fp16: bool) -> Path:
    from safetensors.torch import save_file

    from dap_ros.model import build_model

    model = build_model(model_config)
    buffers = {k for k, _ in model.named_buffers()}
    tensors = {}
    for k, v in state.items():
        v = v.detach().to("cpu").contiguous()
        if fp16 and v.is_floating_point() and k not in buffers:
            v = v.to(torch.float16)
        tensors[k] = v.clone()
    out.mkdir(parents=True, exist_ok=True)
    weights = out / "model.safetensors"
    save_file(tensors, str(weights),
              metadata={"format": "dap_ros native names", "dtype": "float16" if fp16 else "float32"})
    weights.chmod(0o644)  # safetensors writes 0600; the file is package data
    (out / "config.json").write_text(json.dumps(model_config, indent=2) + "\n", encoding="utf-8")
    (out / "training.json").write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    return weights


def real_sample_metrics(model, folder: Path, input_size: tuple[int, int]) -> dict | None:
    """The packaged model on the real Matterport3D sample: prediction at the model's size, resized
    (nearest) to the GT size; raw metric numbers and per-frame median-aligned ones."""
    from PIL import Image

    from dap_ros.evaluation.metrics import MetricsAccumulator, frame_metrics, resize_nearest
    from dap_ros.io import read_exr_depth
    from dap_ros.pipeline import DepthPredictor
    from dap_ros.runtime.torch_runner import TorchRunner

    rgb_path, gt_path = folder / "matterport3d_rgb.png", folder / "matterport3d_depth.exr"
    if not (rgb_path.is_file() and gt_path.is_file()):
        print(f"real sample not found in {folder}; skipped", file=sys.stderr)
        return None
    rgb = np.asarray(Image.open(rgb_path).convert("RGB"))
    gt = read_exr_depth(gt_path).astype(np.float64)
    predictor = DepthPredictor(TorchRunner(model, torch.device("cpu"), torch.float32), input_size=input_size)
    pred = predictor.predict(rgb)
    depth = np.asarray(pred.range_m if hasattr(pred, "range_m") else pred["range_m"], dtype=np.float64)
    if depth.shape != gt.shape:
        depth = resize_nearest(depth, gt.shape)
    acc = MetricsAccumulator(error_bins=None)
    acc.add(frame_metrics(depth, gt, 100.0, align=True, error_bins=None))
    s = acc.summary()
    return {"rgb": rgb_path.name, "gt": gt_path.name, "gt_size": list(gt.shape), "input_size": list(input_size),
            "metric": s["frame_mean"], "median_aligned": s.get("median_aligned", {}).get("frame_mean"),
            "median_scale": s.get("median_aligned", {}).get("scale_median")}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m training.make_embedded", description=__doc__.split("\n\n")[0])
    ap.add_argument("--run", type=Path, default=REPO / "runs" / "embedded_stage3",
                    help="the training run folder (the last stage)")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--fp32", action="store_true", help="store fp32 weights (default fp16)")
    ap.add_argument("--test-samples", type=int, default=100, help="panoramas per held-out test set")
    ap.add_argument("--real-sample", type=Path, default=DEFAULT_REAL)
    ap.add_argument("--eval-only", action="store_true", help="only evaluate the packaged files in --out")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)

    import yaml

    from dap_ros.config import resolve_config
    from dap_ros.model import load_model

    t0 = time.time()
    cfg = yaml.safe_load((args.run / "config.yaml").read_text())
    height, width = int(cfg["data"]["train"]["height"]), int(cfg["data"]["train"]["width"])
    if not args.eval_only:
        mc = cfg["model"]["config"]
        if isinstance(mc, str) and (REPO / mc).is_file():  # a JSON path relative to the repository
            mc = str(REPO / mc)
        model_config = resolve_config(mc).to_dict()
        state, info = select_weights(args.run, cfg, model_config)
        info.update({"input_height": height, "input_width": width, "train_config": cfg,
                     "dtype": "float32" if args.fp32 else "float16"})
        weights = write_package(state, model_config, args.out, info, fp16=not args.fp32)
        print(f"wrote {weights} ({weights.stat().st_size / 1e6:.2f} MB), {args.out / 'config.json'}", flush=True)
    model = load_model(args.out / "model.safetensors", str(args.out / "config.json"), device="cpu", dtype=torch.float32)
    results = {"weights_file": "model.safetensors", "size_bytes": (args.out / "model.safetensors").stat().st_size,
               "resolution": [height, width], "test_sets": {}}
    for kind in ("indoor", "outdoor"):
        spec = test_spec(kind, height, width, args.test_samples)
        m = _evaluate(model, spec)
        results["test_sets"][kind] = {"spec": spec, "metrics": m}
        print(f"held-out {kind} (data seed {spec['seed']}, {args.test_samples} panoramas, {height}x{width}): "
              f"AbsRel {m['abs_rel']:.4f}, RMSE {m['rmse']:.3f} m, delta1 {m['delta1']:.4f}, "
              f"mask IoU {m['mask_iou']}", flush=True)
    real = real_sample_metrics(model, args.real_sample, (height, width))
    if real is not None:
        results["real_sample"] = real
        metric, aligned = real["metric"], real["median_aligned"]
        print(f"real sample (Matterport3D): AbsRel {metric['abs_rel']:.3f}, delta1 {metric['delta1']:.3f}; "
              f"median-aligned AbsRel {aligned['abs_rel']:.3f}, delta1 {aligned['delta1']:.3f} "
              f"(scale {real['median_scale']:.2f})", flush=True)
    results["eval_seconds"] = time.time() - t0
    (args.out / "eval_metrics.json").write_text(json.dumps(results, indent=2, default=str) + "\n", encoding="utf-8")
    print(f"wrote {args.out / 'eval_metrics.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
