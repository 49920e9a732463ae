"""Time the CPU geometry stages.

Usage: PYTHONPATH=. python benchmarks/bench_geometry.py [H W]   (default 960 1920)
"""
from __future__ import annotations

import sys
import time

import numpy as np

from dap_ros.geometry import LaserScanSpec, colored_points, laser_scan, range_to_points
from dap_ros.geometry import scan as scan_module


def _median_ms(fn, repeat: int = 20) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return 1e3 * float(np.median(times))


def main() -> None:
    h, w = (int(sys.argv[1]), int(sys.argv[2])) if len(sys.argv) == 3 else (960, 1920)
    rng = np.random.default_rng(0).uniform(0.5, 30.0, (h, w)).astype(np.float32)
    rgb = np.zeros((h, w, 3), np.uint8)
    spec = LaserScanSpec()
    scan_module._plan.cache_clear()
    t0 = time.perf_counter()
    laser_scan(rng, spec)
    print(f"{h}x{w}: laser_scan first call (plan build) {1e3 * (time.perf_counter() - t0):.2f} ms")
    print(f"{h}x{w}: laser_scan cached          {_median_ms(lambda: laser_scan(rng, spec)):.2f} ms")
    ms = _median_ms(lambda: range_to_points(rng), 5)
    print(f"{h}x{w}: range_to_points            {ms:.2f} ms")
    print(f"{h}x{w}: colored_points stride 4    "
          f"{_median_ms(lambda: colored_points(rng, rgb, stride=4), 5):.2f} ms")


if __name__ == "__main__":
    main()
