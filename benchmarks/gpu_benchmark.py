#!/usr/bin/env python3
"""One-shot GPU benchmark for the lent machine (H100/H200; torch + CUDA, onnx, onnxruntime CPU, no
TensorRT, no package index, 10-minute limit). Imports only torch, numpy, the repository's dap_ros
and, optionally, PIL (for --image).

Random ViT-L weights, batch 1, 512x1024. End-to-end = uint8 RGB in host memory -> metric range +
range mask in host memory (DepthPredictor: upload, resize/normalize, network, metres/mask, download).

Variants: the official-equivalent eager fp16 forward (network .half(), no graphs; forward alone, the
35.2 ms anchor of docs/benchmarks.md, and end-to-end), our torch fp16 end-to-end, fp16 + CUDA graph,
the mixed-precision recipe of the TensorRT export (fp32 LayerNorm/softmax/RoPE/residuals) + CUDA graph,
the same with the DPT heads in fp32 (export-onnx --fp16 --fp32-heads), the fallback that backend
auto loads when TensorRT fails (pipeline.loading.load_fallback, from a checkpoint of the same random
weights), and (opt-in, --compile, in a subprocess with a time cap) torch.compile + CUDA graph.
Accuracy of each against fp32 (median relative depth error over valid pixels, mask agreement, NaN
count) on random input and on an image.

Where TensorRT imports (not on the lent machines), it also exports fp32, fp16 and fp16+fp32-heads
graphs at --trt-height x --trt-width, builds an engine from each behind the accuracy gate, prints
every gate's numbers (refusals included), times the engines that pass, and starts backend auto
on an engine that cannot be used to time the real fallback. Prints markdown tables; writes JSON to
$OUT/gpu_benchmark.json if $OUT is set.

    python benchmarks/gpu_benchmark.py                      # on the GPU machine
    python benchmarks/gpu_benchmark.py --device cpu --config tiny --height 64 --width 128 --iters 2
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from dap_ros.deploy.accuracy import compare_outputs, summary  # noqa: E402
from dap_ros.deploy.mixed_precision import mixed_precision_copy  # noqa: E402
from dap_ros.errors import DapError  # noqa: E402
from dap_ros.model import load_model  # noqa: E402
from dap_ros.pipeline import DepthPredictor, Preprocessor  # noqa: E402
from dap_ros.pipeline.loading import load_fallback  # noqa: E402
from dap_ros.runtime.torch_runner import TorchRunner  # noqa: E402
from dap_ros.settings import ModelSpec  # noqa: E402


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def pct(samples: list[float]) -> dict[str, float]:
    ms = np.asarray(samples) * 1e3
    return {"p50_ms": float(np.percentile(ms, 50)), "p95_ms": float(np.percentile(ms, 95)), "mean_ms": float(ms.mean())}


def reset_memory(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def peak_gib(device: torch.device) -> float | None:
    return torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None


def load_image(path: str | None, size: tuple[int, int]) -> np.ndarray | None:
    try:
        from PIL import Image
    except ImportError:
        return None
    path = path or str(REPO / "dap_ros" / "assets" / "sample_room.jpg")
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB").resize((size[1], size[0]), Image.BILINEAR), dtype=np.uint8).copy()


def network_outputs(runner, frame: np.ndarray, size, device, dtype) -> dict[str, np.ndarray]:
    x = Preprocessor(size, "imagenet", device, dtype)(frame)
    with torch.inference_mode():
        depth, mask = runner(x)
    sync(device)
    return {"pred_depth": depth.float().cpu().numpy(), "pred_mask": mask.float().cpu().numpy()}


def time_e2e(predictor: DepthPredictor, frame: np.ndarray, iters: int, warmup: int) -> dict:
    for _ in range(warmup):
        predictor.predict(frame)
    e2e, stages = [], {"preprocess": [], "inference": [], "postprocess": []}
    for _ in range(iters):
        t0 = time.perf_counter()
        result = predictor.predict(frame)
        e2e.append(time.perf_counter() - t0)
        for k in stages:
            stages[k].append(result.timings[k])
    out = {"end_to_end": pct(e2e), **{k: pct(v)["p50_ms"] for k, v in stages.items()}}
    out["nan_in_output"] = bool(np.isnan(result.range_m).any())
    return out


def time_forward(model, x: torch.Tensor, iters: int, warmup: int, device) -> dict:
    samples = []
    with torch.inference_mode():
        for i in range(warmup + iters):
            sync(device)
            t0 = time.perf_counter()
            model(x)
            sync(device)
            if i >= warmup:
                samples.append(time.perf_counter() - t0)
    return pct(samples)


def run_variant(name, make_runner, args, device, size, frames, reference, results) -> None:
    reset_memory(device)
    t0 = time.perf_counter()
    try:
        runner = make_runner()
        predictor = DepthPredictor(runner, input_size=size)
        predictor.predict(frames["random"])
        sync(device)
        startup = time.perf_counter() - t0
        row = {"variant": name, "startup_s": startup, **time_e2e(predictor, frames["random"], args.iters, args.warmup)}
        for key, frame in frames.items() if reference is not None else ():
            metrics = compare_outputs(network_outputs(runner, frame, size, device, runner.input_dtype), reference[key])
            row[f"accuracy_{key}"] = metrics
        row["peak_gpu_gib"] = peak_gib(device)
    except Exception as exc:  # noqa: BLE001 - one failing variant must not lose the others' numbers
        row = {"variant": name, "error": f"{type(exc).__name__}: {exc}"}
    results.append(row)
    print(f"  {name}: " + (f"e2e p50 {row['end_to_end']['p50_ms']:.2f} ms" if "error" not in row else row["error"]),
          flush=True)
    gc.collect()


def tensorrt_variants(args, model32, device, workdir: Path, checkpoint: Path, frames, results) -> list[dict]:
    """Export, build behind the gate, time; returns one gate row per engine (empty without TensorRT)."""
    try:
        import tensorrt
    except ImportError as exc:
        print(f"  TensorRT not importable ({exc}): engine variants and the real fallback skipped", flush=True)
        return []
    from dap_ros.deploy.onnx_export import export_onnx
    from dap_ros.deploy.trt_build import build_engine

    size = (args.trt_height, args.trt_width)
    gates = []
    cpu_model = model32.float().cpu()
    for name, options in (("fp32", {}), ("fp16", {"precision": "fp16"}),
                          ("fp16 + fp32 heads", {"precision": "fp16", "fp32_heads": True})):
        onnx = workdir / f"dap_{name.replace(' ', '').replace('+', '_')}.onnx"
        row = {"engine": name, "tensorrt": tensorrt.__version__, "size": list(size)}
        try:
            t0 = time.perf_counter()
            export_onnx(cpu_model, onnx, height=size[0], width=size[1], log=lambda m: None, **options)
            row["export_s"] = time.perf_counter() - t0
            engine = onnx.with_suffix(".engine")
            sidecar = build_engine(onnx, engine, workspace_gb=4.0, device_index=device.index or 0,
                                   timing_cache=workdir / "timing.cache", log=lambda m: None)
            row.update(build_s=sidecar.build_seconds, gate="passed", metrics=sidecar.accuracy)
            spec = ModelSpec(backend="tensorrt", device=str(device), engine=str(engine), onnx=str(onnx),
                             cuda_graph=True, input_size=size)
            run_variant(f"TensorRT {name} engine + CUDA graph ({size[0]}x{size[1]})",
                        lambda spec=spec: DepthPredictor.from_spec(spec).runner, args, device, size,
                        {"random": frames["random"]}, None, results)
        except DapError as exc:
            row.update(gate="REFUSED" if "NOT written" in str(exc) else "error", message=str(exc))
        gates.append(row)
        print(f"  gate {name}: {row['gate']} " + (summary(row["metrics"]) if "metrics" in row else
                                                   row.get("message", "")), flush=True)
    # The real fallback: auto with an engine whose sidecar no longer matches (as after a TensorRT upgrade).
    broken = workdir / "stale.engine"
    broken.write_bytes(b"stale")
    Path(str(broken) + ".json").write_text("{}")
    spec = ModelSpec(backend="auto", device=str(device), engine=str(broken), checkpoint=str(checkpoint),
                     model_config=args.config, input_size=(args.height, args.width))
    run_variant("backend auto, unusable engine -> fallback", lambda: DepthPredictor.from_spec(spec).runner, args,
                device, (args.height, args.width), frames, None, results)
    return gates


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--config", default="vitl")
    parser.add_argument("--height", type=int, default=512)
    parser.add_argument("--width", type=int, default=1024)
    parser.add_argument("--iters", type=int, default=50)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--image", help="image for the fp16-vs-fp32 check (default: the bundled sample)")
    parser.add_argument("--compile", action="store_true", help="also torch.compile (subprocess, time-capped)")
    parser.add_argument("--compile-timeout", type=float, default=240.0)
    parser.add_argument("--only-compile", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--trt-height", type=int, default=256, help="engine variants' input height (TensorRT only)")
    parser.add_argument("--trt-width", type=int, default=512, help="engine variants' input width (TensorRT only)")
    args = parser.parse_args()

    started = time.perf_counter()
    device = torch.device(args.device)
    size = (args.height, args.width)
    half = torch.float16
    torch.manual_seed(0)
    t0 = time.perf_counter()
    model32 = load_model(None, args.config, device=device)  # random weights
    build_s = time.perf_counter() - t0
    rng = np.random.default_rng(0)
    frames = {"random": rng.integers(0, 256, (args.height, args.width, 3), dtype=np.uint8)}
    image = load_image(args.image, size)
    if image is not None:
        frames["image"] = image

    if args.only_compile:  # child process of --compile
        t0 = time.perf_counter()
        runner = TorchRunner(model32.half(), device, half, cuda_graph=device.type == "cuda", compile=True)
        predictor = DepthPredictor(runner, input_size=size)
        predictor.predict(frames["random"])
        sync(device)
        row = {"variant": "torch fp16 + torch.compile" + (" + CUDA graph" if device.type == "cuda" else ""),
               "startup_s": time.perf_counter() - t0, **time_e2e(predictor, frames["random"], args.iters, args.warmup)}
        print("COMPILE_RESULT " + json.dumps(row))
        return 0

    print(f"gpu_benchmark: {args.config} random weights, {args.width}x{args.height}, batch 1, device {device}"
          + (f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else ""), flush=True)
    fp32_runner = TorchRunner(model32, device, torch.float32)
    reference = {k: network_outputs(fp32_runner, f, size, device, torch.float32) for k, f in frames.items()}
    results: list[dict] = []

    # Official-equivalent: the network .half(), eager, forward alone (docs/benchmarks.md anchor).
    model16 = load_model(None, args.config, device=device)
    model16.load_state_dict(model32.state_dict())
    model16 = model16.half().eval()
    reset_memory(device)
    x16 = Preprocessor(size, "imagenet", device, half)(frames["random"])
    eager = {"variant": "official-equivalent eager fp16 forward only (.half())",
             "forward": time_forward(model16, x16, args.iters, args.warmup, device), "peak_gpu_gib": peak_gib(device)}
    results.append(eager)
    print(f"  eager fp16 forward: p50 {eager['forward']['p50_ms']:.2f} ms", flush=True)

    run_variant("eager fp16 end-to-end (ours, no graph)", partial(TorchRunner, model16, device, half),
                args, device, size, frames, reference, results)
    if device.type == "cuda":
        run_variant("torch fp16 + CUDA graph", partial(TorchRunner, model16, device, half, cuda_graph=True),
                    args, device, size, frames, reference, results)
    del model16
    graph = " + CUDA graph" if device.type == "cuda" else ""
    run_variant("mixed-precision recipe (fp32 islands)" + graph,
                partial(TorchRunner, mixed_precision_copy(model32), device, torch.float32,
                        cuda_graph=device.type == "cuda"),
                args, device, size, frames, reference, results)
    run_variant("mixed-precision recipe, DPT heads fp32 (--fp32-heads)" + graph,
                partial(TorchRunner, mixed_precision_copy(model32, fp32_heads=True), device, torch.float32,
                        cuda_graph=device.type == "cuda"),
                args, device, size, frames, reference, results)
    workdir = Path(tempfile.mkdtemp(prefix="gpu_benchmark_"))
    checkpoint = workdir / "random_weights.pth"
    torch.save(model32.state_dict(), checkpoint)
    fallback_spec = ModelSpec(backend="auto", device=str(device), checkpoint=str(checkpoint),
                              model_config=args.config, input_size=size)
    run_variant("backend auto's fallback when TensorRT fails (load_fallback)",
                lambda: load_fallback(fallback_spec, device, "TensorRT: (benchmark) engine refused").runner,
                args, device, size, frames, reference, results)
    gates = tensorrt_variants(args, model32, device, workdir, checkpoint, frames, results)
    if args.compile:
        cmd = [sys.executable, __file__, "--only-compile", "--device", args.device, "--config", args.config,
               "--height", str(args.height), "--width", str(args.width), "--iters", str(args.iters),
               "--warmup", str(args.warmup)]
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=args.compile_timeout)
            line = next((x for x in done.stdout.splitlines() if x.startswith("COMPILE_RESULT ")), None)
            row = json.loads(line[len("COMPILE_RESULT "):]) if line else {
                "variant": "torch.compile", "error": (done.stderr.strip().splitlines() or ["no output"])[-1]}
        except subprocess.TimeoutExpired:
            row = {"variant": "torch.compile", "error": f"not done within {args.compile_timeout:.0f} s (skipped)"}
        results.append(row)

    anchor = eager["forward"]["p50_ms"]
    print("\n| variant | e2e p50 ms | e2e p95 ms | x vs eager fwd | rel err random | rel err image | NaN | peak GiB "
          "| start-up s |")
    print("|---|---:|---:|---:|---:|---:|---|---:|---:|")
    print(f"| {eager['variant']} | {anchor:.2f} (fwd) | {eager['forward']['p95_ms']:.2f} (fwd) | 1.00 | | | | "
          f"{eager['peak_gpu_gib'] or 0:.2f} | |")
    for row in results[1:]:
        if "error" in row:
            print(f"| {row['variant']} | error: {row['error']} | | | | | | | |")
            continue
        e2e = row["end_to_end"]
        rel = {k: f"{row[k]['depth_median_rel']:.1e}" if k in row else "-"
               for k in ("accuracy_random", "accuracy_image")}
        print(f"| {row['variant']} | {e2e['p50_ms']:.2f} | {e2e['p95_ms']:.2f} | {anchor / e2e['p50_ms']:.2f} | "
              f"{rel['accuracy_random']} | {rel['accuracy_image']} | {row['nan_in_output']} | "
              f"{row.get('peak_gpu_gib') or 0:.2f} | {row['startup_s']:.1f} |")
    report = {
        "config": args.config, "size": list(size), "device": str(device),
        "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor(),
        "torch": torch.__version__, "cuda": torch.version.cuda, "model_build_s": build_s,
        "total_s": time.perf_counter() - started, "results": results, "tensorrt_gates": gates,
    }
    if gates:
        print("\n| engine | TensorRT | gate | median rel depth | mask agreement | max abs depth | build s |")
        print("|---|---|---|---:|---:|---:|---:|")
        for g in gates:
            m = g.get("metrics", {})
            print(f"| {g['engine']} | {g['tensorrt']} | {g['gate']} | {m.get('depth_median_rel', float('nan')):.2e} | "
                  f"{m.get('mask_agreement', float('nan')):.4f} | {m.get('pred_depth_max_abs', float('nan')):.2e} | "
                  f"{g.get('build_s', float('nan')):.0f} |")
    out = os.environ.get("OUT")
    if out:
        Path(out).mkdir(parents=True, exist_ok=True)
        (Path(out) / "gpu_benchmark.json").write_text(json.dumps(report, indent=2) + "\n")
        print(f"\nwrote {Path(out) / 'gpu_benchmark.json'}")
    print(f"total {report['total_s']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
