#!/usr/bin/env python3
"""What a new camera rotation costs the preprocessing (not a test).

With ``leveling: imu`` every new IMU roll/pitch gives a new output-to-camera rotation, and the
camera's remap (docs/cameras.md) is rebuilt for it. For a 1920x960 panorama and a 3840x1920
dual-fisheye frame, at each network size, this times ``Camera.network_input`` twice per rotation:
the first call builds the remap, the second reuses it (the anchor: what every frame pays with
``leveling: static``). Prints medians over --rotations rotations and their ratio. Results are in
docs/benchmarks.md#cameras-and-mounts.

    .venv/bin/python benchmarks/camera_remap.py --rotations 12 --threads 2
"""
from __future__ import annotations

import argparse
import math
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

SIZES = ((256, 512), (512, 1024))


def dual_fisheye_calibration(width: int) -> dict:
    """A side_by_side frame of width x width/2: two back-to-back 190-degree equidistant lenses
    filling the two halves (the fisheye camera of the benchmarks)."""
    half = width // 2
    lens = {"model": "equidistant", "center": [half / 2 - 0.5, half / 2 - 0.5], "focal": (half / 2) / (math.pi / 2),
            "fov_deg": 190.0}
    return {"layout": "side_by_side", "image_size": [width, half],
            "lenses": [{**lens, "rpy_deg": [0.0, 0.0, 0.0]}, {**lens, "rpy_deg": [0.0, 0.0, 180.0]}]}


def _cameras(directory: Path) -> list[tuple[str, object, np.ndarray]]:
    import yaml

    from dap_ros.settings import CameraSpec

    calibration = directory / "dual_fisheye.yaml"
    calibration.write_text(yaml.safe_dump(dual_fisheye_calibration(3840)))
    return [("1920x960 panorama", CameraSpec(leveling="imu"), np.zeros((960, 1920, 3), np.uint8)),
            ("3840x1920 dual fisheye", CameraSpec(projection="dual_fisheye", fisheye_calibration=str(calibration),
                                                  leveling="imu"), np.zeros((1920, 3840, 3), np.uint8))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rotations", type=int, default=12, help="rotations timed per case (default 12)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    args = parser.parse_args(argv)
    if args.rotations < 1 or args.threads < 1:
        parser.error("--rotations and --threads must be at least 1")

    import torch

    from dap_ros.geometry.rotation import rpy_deg_matrix
    from dap_ros.pipeline.camera import Camera

    torch.set_num_threads(args.threads)
    print(f"{platform.processor() or platform.machine()}, {args.threads} threads, torch {torch.__version__}")
    with tempfile.TemporaryDirectory(prefix="dap_remap_") as directory:
        for name, spec, frame in _cameras(Path(directory)):
            camera = Camera(spec, torch.device("cpu"))
            sources = camera.sources(frame)
            for size in SIZES:
                built, cached = [], []
                for i in range(args.rotations):
                    view = camera.view(rpy_deg_matrix((0.1 * (i + 1), 0.2 * (i + 1), 0.0)))
                    start = time.perf_counter()
                    camera.network_input(sources, size, view)
                    middle = time.perf_counter()
                    camera.network_input(sources, size, view)
                    cached.append(time.perf_counter() - middle)
                    built.append(middle - start - cached[-1])
                extra, anchor = statistics.median(built) * 1e3, statistics.median(cached) * 1e3
                print(f"{name} -> {size[0]}x{size[1]}: extra per new rotation {extra:.1f} ms; "
                      f"anchor (remap cached) {anchor:.1f} ms; ratio {extra / anchor:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
