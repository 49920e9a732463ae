#!/usr/bin/env python3
"""Render the demo sequence bundled in dap_ros/assets/demo_sequence/ (used by ``dap-ros demo``).

A 360° camera moves in a straight line through one procedurally generated room
(training.data.synthetic, the generator the embedded model was trained on). Each frame is written as

- ``rgb/NNN.jpg``: the equirectangular RGB panorama (JPEG, quality 90);
- ``gt/NNN.png``: its ground-truth radial range, 16-bit PNG in millimetres (0 = no ground truth);

plus ``sequence.json`` (scene seed, camera poses, frame rate, units). The scene seed is searched
from ``--seed`` upwards until a room holds a straight path of ``--length`` metres that stays
``--clearance`` metres from every piece of furniture. The seeds used here (31337 and up) are far
from every seed the embedded model was trained or validated on (see its MODEL_CARD.md).

    python scripts/make_demo_sequence.py            # rewrites dap_ros/assets/demo_sequence/
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import shutil
import sys
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from training.data.synthetic import make_scene, render_scene  # noqa: E402

DEFAULT_OUT = REPO / "dap_ros" / "assets" / "demo_sequence"


def _clear(scene, p: np.ndarray, clearance: float) -> bool:
    """True when the camera position ``p`` is inside the room and ``clearance`` m away from every primitive."""
    for prim in scene.primitives:
        if prim.shape == "room":
            lo, hi = np.asarray(prim.lo), np.asarray(prim.hi)
            if np.any(p < lo + clearance) or np.any(p > hi - clearance):
                return False
        elif prim.shape == "box":
            lo, hi = np.asarray(prim.lo), np.asarray(prim.hi)
            d = np.maximum(np.maximum(lo - p, p - hi), 0.0)
            if np.linalg.norm(d) < clearance:
                return False
        elif prim.shape == "cylinder":
            dz = max(prim.z0 - p[2], p[2] - prim.z1, 0.0)
            dr = max(math.hypot(p[0] - prim.center[0], p[1] - prim.center[1]) - prim.radius, 0.0)
            if math.hypot(dr, dz) < clearance:
                return False
        elif prim.shape == "sphere":
            if np.linalg.norm(p - np.asarray(prim.center)) - prim.radius < clearance:
                return False
    return True


def find_path(seed: int, length: float, frames: int, clearance: float, tries: int = 400):
    """(scene, start, end) of a clear straight path in room ``seed``, or None."""
    scene = make_scene(seed, "indoor")
    room = scene.room
    sx, sy = room.hi[0], room.hi[1]
    if min(sx, sy) < 3.0:
        return None
    rng = np.random.default_rng(seed)
    z = scene.camera[2]
    for _ in range(tries):
        start = np.array([rng.uniform(0, sx), rng.uniform(0, sy), z])
        ang = rng.uniform(-math.pi, math.pi)
        end = start + length * np.array([math.cos(ang), math.sin(ang), 0.0])
        if all(_clear(scene, start + (end - start) * k / (frames - 1), clearance) for k in range(frames)):
            return scene, start, end
    return None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--seed", type=int, default=31337, help="first scene seed tried")
    ap.add_argument("--frames", type=int, default=24)
    ap.add_argument("--height", type=int, default=256)
    ap.add_argument("--length", type=float, default=3.0, help="metres travelled")
    ap.add_argument("--clearance", type=float, default=0.6, help="metres from walls and furniture")
    ap.add_argument("--rate", type=float, default=5.0, help="frames per second (stamps)")
    ap.add_argument("--quality", type=int, default=90, help="JPEG quality")
    args = ap.parse_args(argv)
    h, w = args.height, 2 * args.height

    seed = args.seed
    found = None
    while found is None:
        found = find_path(seed, args.length, args.frames, args.clearance)
        if found is None:
            seed += 1
            if seed > args.seed + 500:
                raise SystemExit("no room with a clear path found")
    scene, start, end = found
    heading = math.atan2(end[1] - start[1], end[0] - start[0])
    if args.out.exists():
        shutil.rmtree(args.out)
    (args.out / "rgb").mkdir(parents=True)
    (args.out / "gt").mkdir(parents=True)
    poses = []
    for k in range(args.frames):
        p = start + (end - start) * k / (args.frames - 1)
        # level camera looking along the path, with a slow yaw swing
        yaw = heading + 0.25 * math.sin(2 * math.pi * k / args.frames)
        frame_scene = dataclasses.replace(scene, camera=tuple(float(v) for v in p), yaw=yaw,
                                          noise_seed=scene.noise_seed + k)
        out = render_scene(frame_scene, h, w)
        Image.fromarray(out["rgb"]).save(args.out / "rgb" / f"{k:03d}.jpg", quality=args.quality)
        rng_m = out["range_m"]
        mm = np.where(np.isfinite(rng_m) & (rng_m > 0) & (rng_m < 65.0), np.round(rng_m * 1000.0), 0)
        Image.fromarray(mm.astype(np.uint16)).save(args.out / "gt" / f"{k:03d}.png", optimize=True)
        poses.append({"index": k, "x": float(p[0]), "y": float(p[1]), "z": float(p[2]), "yaw": yaw,
                      "min_range_m": float(np.nanmin(np.where(np.isfinite(rng_m), rng_m, np.nan)))})
    meta = {
        "description": "a 360-degree camera moving through one procedurally generated room "
                       "(training.data.synthetic), rendered by scripts/make_demo_sequence.py",
        "scene_seed": seed,
        "scene_kind": "indoor",
        "room_size_m": list(scene.room.hi),
        "frames": args.frames,
        "height": h,
        "width": w,
        "rate_hz": args.rate,
        "rgb": f"rgb/NNN.jpg (sRGB, JPEG quality {args.quality})",
        "gt": "gt/NNN.png: 16-bit radial range in millimetres, 0 = no ground truth",
        "gt_scale": 0.001,
        "frame_id": "camera",
        "poses": poses,
        "command": " ".join(["python scripts/make_demo_sequence.py", *(argv if argv is not None else sys.argv[1:])]),
    }
    (args.out / "sequence.json").write_text(json.dumps(meta, indent=1) + "\n", encoding="utf-8")
    total = sum(f.stat().st_size for f in args.out.rglob("*") if f.is_file())
    print(f"scene seed {seed}: {args.frames} frames {h}x{w} -> {args.out} ({total / 1e6:.2f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
