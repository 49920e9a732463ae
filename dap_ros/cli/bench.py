"""``dap-ros bench``: per-stage latency and throughput of a backend, optionally beside the
official-equivalent eager fp16 forward in the same process (so the speed-up is one run's ratio)."""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from dap_ros.cli.common import add_model_options, parse_size, spec_from_args
from dap_ros.errors import DapError

STAGES = ("preprocess", "inference", "postprocess", "end_to_end")


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "bench",
        help="measure per-stage latency (p50/p95) and throughput of an inference backend",
        description=(
            "End-to-end = uint8 RGB frame in host memory -> metric range + range mask in host memory. "
            "Stages: preprocess (upload, resize, normalize), inference, postprocess (metres, mask, resize, "
            "download). --compare-eager also times the official-equivalent eager forward (our network "
            ".half(), no graphs; fp32 on the CPU) on the same input and prints the ratio."
        ),
    )
    parser.add_argument("--height", type=int, default=512, help="network input height (default 512)")
    parser.add_argument("--width", type=int, default=1024, help="network input width (default 1024)")
    parser.add_argument("--frame-size", type=parse_size, metavar="HxW",
                        help="camera frame size (default: network size)")
    parser.add_argument("--iters", type=int, default=50, help="timed iterations (default 50)")
    parser.add_argument("--warmup", type=int, default=5, help="untimed iterations first (default 5)")
    parser.add_argument("--compare-eager", action="store_true",
                        help="also time the eager fp16 forward (official-equivalent)")
    parser.add_argument("--json", type=Path, help="also write the results as JSON")
    add_model_options(parser)
    parser.set_defaults(run=run, input_size=None)


def percentiles(samples: list[float]) -> dict[str, float]:
    values = np.asarray(samples, dtype=np.float64) * 1e3
    return {"p50_ms": float(np.percentile(values, 50)), "p95_ms": float(np.percentile(values, 95)),
            "mean_ms": float(values.mean())}


def time_predictor(predictor, frame: np.ndarray, iters: int, warmup: int) -> dict[str, dict[str, float]]:
    for _ in range(warmup):
        predictor.predict(frame)
    samples: dict[str, list[float]] = {stage: [] for stage in STAGES}
    for _ in range(iters):
        t0 = time.perf_counter()
        result = predictor.predict(frame)
        samples["end_to_end"].append(time.perf_counter() - t0)
        for stage in STAGES[:3]:
            samples[stage].append(result.timings[stage])
    return {stage: percentiles(values) for stage, values in samples.items()}


def time_eager_forward(args, predictor, frame: np.ndarray, iters: int, warmup: int) -> dict:
    """The official module's way: the network .half() (fp32 on the CPU), eager, no graphs, forward only."""
    import torch

    from dap_ros.model import load_model

    device = predictor.device if predictor.device.type == "cuda" else torch.device("cpu")
    dtype = torch.float16 if device.type == "cuda" else torch.float32
    model = load_model(args.checkpoint or None, args.model_config, device=device, dtype=dtype)
    from dap_ros.pipeline import Preprocessor

    x = Preprocessor(predictor.input_size, predictor.normalization, device, dtype)(frame)

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    samples = []
    with torch.inference_mode():
        for i in range(warmup + iters):
            sync()
            t0 = time.perf_counter()
            model(x)
            sync()
            if i >= warmup:
                samples.append(time.perf_counter() - t0)
    del model
    return {"variant": f"eager {'fp16 .half()' if dtype == torch.float16 else 'fp32'} forward on {device}",
            **percentiles(samples)}


def run(args: argparse.Namespace) -> int:
    import torch

    if args.iters < 1 or args.warmup < 0:
        raise DapError("--iters must be >= 1 and --warmup >= 0")
    args.input_size = args.input_size or (args.height, args.width)
    frame_h, frame_w = args.frame_size or args.input_size
    frame = np.random.default_rng(0).integers(0, 256, (frame_h, frame_w, 3), dtype=np.uint8)
    t0 = time.perf_counter()
    from dap_ros.pipeline import DepthPredictor

    predictor = DepthPredictor.from_spec(spec_from_args(args))
    predictor.predict(frame)
    if predictor.device.type == "cuda":
        torch.cuda.synchronize(predictor.device)
        torch.cuda.reset_peak_memory_stats(predictor.device)
    startup = time.perf_counter() - t0
    stats = time_predictor(predictor, frame, args.iters, args.warmup)
    peak = torch.cuda.max_memory_allocated(predictor.device) / 2**30 if predictor.device.type == "cuda" else None
    throughput = 1e3 / stats["end_to_end"]["mean_ms"]
    desc = predictor.runner.describe()
    report = {
        "backend": predictor.backend, "runner": desc, "device": str(predictor.device),
        "precision": predictor.precision, "input_size": list(predictor.input_size), "frame_size": [frame_h, frame_w],
        "iters": args.iters, "startup_s": startup, "stages": stats, "throughput_fps": throughput,
        "peak_gpu_memory_gib": peak, "torch": torch.__version__,
        "gpu": torch.cuda.get_device_name(predictor.device) if predictor.device.type == "cuda" else None,
    }
    print(f"dap-ros bench: {desc}; frame {frame_w}x{frame_h} uint8 -> network "
          f"{predictor.input_size[1]}x{predictor.input_size[0]}; {args.iters} iterations after {args.warmup} warm-up")
    print("| stage | p50 ms | p95 ms |\n|---|---:|---:|")
    for stage in STAGES:
        print(f"| {stage} | {stats[stage]['p50_ms']:.2f} | {stats[stage]['p95_ms']:.2f} |")
    print(f"throughput {throughput:.1f} frames/s; start-up {startup:.1f} s"
          + (f"; peak GPU memory {peak:.2f} GiB" if peak is not None else ""))
    if args.compare_eager:
        eager = time_eager_forward(args, predictor, frame, args.iters, args.warmup)
        ratio = eager["p50_ms"] / stats["end_to_end"]["p50_ms"]
        report["eager"] = {**eager, "ratio_eager_forward_over_end_to_end": ratio}
        print(f"{eager['variant']}: p50 {eager['p50_ms']:.2f} ms, p95 {eager['p95_ms']:.2f} ms; "
              f"{desc} end-to-end is {ratio:.2f}x faster (p50 / p50)")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return 0
