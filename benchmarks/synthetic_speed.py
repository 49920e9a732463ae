"""Speed of the synthetic panorama generator (training.data.synthetic) on this machine's CPU.

    python benchmarks/synthetic_speed.py [--samples 8] [--threads 1 2] [--sizes 256x512 512x1024]

Prints samples/s for rendering alone (render_panorama, half indoor / half outdoor seeds) and for
full training samples (SyntheticDataset: render + resize/targets + augmentation + normalization),
for each torch thread count. The load average is printed with the numbers: on a shared machine
other processes slow these down (a DataLoader worker uses one thread per process).
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from training.data import build_dataset  # noqa: E402
from training.data.synthetic import render_panorama  # noqa: E402


def _rate(fn, n: int) -> float:
    fn(0)  # warm-up
    t0 = time.perf_counter()
    for i in range(1, n + 1):
        fn(i)
    return n / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=8)
    ap.add_argument("--threads", type=int, nargs="+", default=[1, os.cpu_count() or 1])
    ap.add_argument("--sizes", nargs="+", default=["256x512", "512x1024"])
    args = ap.parse_args()
    print(f"cpu cores: {os.cpu_count()}, torch {torch.__version__}, load average before: {os.getloadavg()}")
    print(f"{'size':>9} {'threads':>7} {'render/s':>9} {'indoor/s':>9} {'outdoor/s':>10} {'dataset/s':>10}  load")
    for size in args.sizes:
        h, w = (int(v) for v in size.split("x"))
        n = max(2, args.samples if h <= 256 else args.samples // 2)
        for threads in dict.fromkeys(args.threads):
            torch.set_num_threads(threads)
            mixed = _rate(lambda i, h=h, w=w: render_panorama(i, h, w, "random"), n)
            indoor = _rate(lambda i, h=h, w=w: render_panorama(100 + i, h, w, "indoor"), n)
            outdoor = _rate(lambda i, h=h, w=w: render_panorama(200 + i, h, w, "outdoor"), n)
            ds = build_dataset({"type": "synthetic", "num_samples": n + 1, "seed": 5, "height": h, "width": w,
                                "augment": True})
            full = _rate(ds.__getitem__, n)
            print(f"{size:>9} {threads:>7} {mixed:9.2f} {indoor:9.2f} {outdoor:10.2f} {full:10.2f}  "
                  f"{os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
