"""CPU inference benchmark of the full DAP ViT-L network (random weights).

Builds ``dap_ros.model.load_model(None, "vitl")`` (365.1 M parameters), then times batch-1
inference under ``torch.inference_mode()``: ``--warmup`` untimed runs (default 1), then ``--runs``
timed runs (default 3). Prints median / min ms per frame, peak resident memory, the machine, and
the ratio to the anchor of docs/benchmarks.md (official implementation, eager fp32, ~14,000 ms per frame on
the 2-core CPU machines). Results are in docs/benchmarks.md.

Usage:
    python benchmarks/cpu_inference.py                      # fp32, 512x1024, 3 runs, torch threads
    python benchmarks/cpu_inference.py --runs 5 --threads 2 --size 512x1024 --precision bf16
    python benchmarks/cpu_inference.py --profile 15         # + torch.profiler top-15 ops of one run

A benchmark script, not a test: a full fp32 run takes about a minute on 2 cores and ~2 GB of RAM.
"""
from __future__ import annotations

import argparse
import os
import platform
import re
import resource
import statistics
import sys
import time

ANCHOR_MS = 14_000.0  # docs/benchmarks.md: official DAP module, CPU, 2 cores, eager fp32, ms per frame
PATCH = 16


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line on stderr, exit status 2
        sys.stderr.write(f"{self.prog}: error: {message}\n")
        raise SystemExit(2)


def _size(text: str) -> tuple[int, int]:
    m = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", text)
    if not m:
        raise argparse.ArgumentTypeError(f"expected HxW such as 512x1024, got {text!r}")
    h, w = int(m[1]), int(m[2])
    if h <= 0 or w <= 0 or h % PATCH or w % PATCH:
        raise argparse.ArgumentTypeError(f"height and width must be positive multiples of {PATCH}, got {h}x{w}")
    return h, w


def _positive(kind: str, minimum: int):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{kind} must be an integer, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{kind} must be >= {minimum}, got {value}")
        return value

    return parse


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = _Parser(prog="cpu_inference.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=_positive("--runs", 1), default=3, help="timed runs (default 3)")
    p.add_argument("--warmup", type=_positive("--warmup", 0), default=1, help="untimed warm-up runs (default 1)")
    p.add_argument("--threads", type=_positive("--threads", 1), default=None,
                   help="torch intra-op threads (default: torch's default)")
    p.add_argument("--size", type=_size, default=(512, 1024), metavar="HxW", help="input size (default 512x1024)")
    p.add_argument("--precision", choices=("fp32", "bf16"), default="fp32",
                   help="fp32 (default) or bf16 (model.to(torch.bfloat16), bf16 input)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random weights and input (default 0)")
    p.add_argument("--profile", type=_positive("--profile", 1), default=None, metavar="N",
                   help="after timing, profile one more run with torch.profiler and print the top N ops")
    return p.parse_args(argv)


def current_rss_mb() -> float:
    """Resident set size now (VmRSS), MiB."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def peak_rss_mb() -> float:
    """Peak resident set size of this process (ru_maxrss, KiB on Linux), MiB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def load_average() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "n/a"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    rss_start = current_rss_mb()  # before importing torch

    import torch

    from dap_ros.model import count_parameters, load_model

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    dtype = torch.bfloat16 if args.precision == "bf16" else torch.float32
    h, w = args.size

    print(f"torch {torch.__version__}, CPU '{cpu_model()}', {os.cpu_count()} logical CPUs, "
          f"{torch.get_num_threads()} torch threads, python {platform.python_version()}")
    print(f"load average before: {load_average()}")

    rss_before = current_rss_mb()  # after importing torch, before building the model
    torch.manual_seed(args.seed)
    t0 = time.perf_counter()
    model = load_model(None, "vitl")
    if dtype != torch.float32:
        model = model.to(dtype)
    build_s = time.perf_counter() - t0
    n_params = count_parameters(model)
    x = torch.randn(1, 3, h, w, generator=torch.Generator().manual_seed(args.seed + 1)).to(dtype)
    print(f"model: DAP vitl, random weights, {n_params / 1e6:.1f} M params, {args.precision}, "
          f"built in {build_s:.1f} s; input 1x3x{h}x{w}")

    def run() -> dict:
        with torch.inference_mode():
            return model(x)

    for i in range(args.warmup):
        t0 = time.perf_counter()
        out = run()
        print(f"warm-up {i + 1}/{args.warmup}: {1e3 * (time.perf_counter() - t0):,.0f} ms")
    times = []
    for i in range(args.runs):
        t0 = time.perf_counter()
        out = run()
        times.append(1e3 * (time.perf_counter() - t0))
        print(f"run {i + 1}/{args.runs}: {times[-1]:,.0f} ms")
    depth = out["pred_depth"].float()
    if tuple(depth.shape) != (1, 1, h, w) or not torch.isfinite(depth).all():
        print(f"error: bad output pred_depth {tuple(depth.shape)}", file=sys.stderr)
        return 1

    median, best = statistics.median(times), min(times)
    peak = peak_rss_mb()
    print()
    print(f"median {median:,.0f} ms/frame, min {best:,.0f} ms/frame ({args.runs} runs, "
          f"{1e3 / median:.3f} frames/s)")
    print(f"peak RSS {peak:,.0f} MiB (ru_maxrss); +{peak - rss_before:,.0f} MiB over the "
          f"{rss_before:,.0f} MiB before building the model ({rss_start:,.0f} MiB before importing torch)")
    print(f"ratio to the anchor (official, eager fp32, 2 cores, {ANCHOR_MS:,.0f} ms): "
          f"{median / ANCHOR_MS:.3f}x the time ({ANCHOR_MS / median:.2f}x as fast)")
    print(f"load average after: {load_average()}")

    if args.profile:
        from torch.profiler import ProfilerActivity, profile

        with profile(activities=[ProfilerActivity.CPU]) as prof:
            run()
        print()
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=args.profile))
    return 0


if __name__ == "__main__":
    sys.exit(main())
