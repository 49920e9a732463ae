#!/usr/bin/env python3
"""Render the sample panorama that ships in dap_ros/assets: a textured box room, ray cast into ERP.

Deterministic (no randomness); rerun to regenerate:  python scripts/make_sample_panorama.py
Writes sample_room.jpg (RGB, 1024x512) and sample_room_range_mm.png (exact radial range, 16-bit mm).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from dap_ros.geometry import ray_directions
from dap_ros.io import save_range_png_mm

HEIGHT, WIDTH = 512, 1024
# Room in the camera body frame (REP 103: x forward, y left, z up); camera 1.3 m above the floor.
WALLS = {"front": (0, 3.2), "back": (0, -2.6), "left": (1, 2.1), "right": (1, -3.4)}
FLOOR_Z, CEILING_Z = -1.3, 1.5
WALL_COLOURS = {"front": (196, 160, 120), "back": (120, 150, 190), "left": (170, 190, 140), "right": (200, 140, 140)}


def render() -> tuple[np.ndarray, np.ndarray]:
    rays = ray_directions(HEIGHT, WIDTH).astype(np.float64)
    best_t = np.full((HEIGHT, WIDTH), np.inf)
    label = np.full((HEIGHT, WIDTH), "", dtype=object)
    planes = dict(WALLS, floor=(2, FLOOR_Z), ceiling=(2, CEILING_Z))
    for name, (axis, offset) in planes.items():
        with np.errstate(divide="ignore", invalid="ignore"):
            t = offset / rays[..., axis]
        hit = (t > 0) & (t < best_t)
        best_t[hit] = t[hit]
        label[hit] = name
    points = rays * best_t[..., None]
    rgb = np.zeros((HEIGHT, WIDTH, 3), dtype=np.float64)
    for name, colour in WALL_COLOURS.items():
        sel = label == name
        axis = WALLS[name][0]
        along = points[..., 1 - axis][sel]  # horizontal coordinate along the wall
        stripes = 0.85 + 0.15 * (np.floor(along / 0.5) % 2)
        window = (np.abs(points[..., 2][sel] - 0.3) < 0.5) & (np.abs(along - 0.4) < 0.6)
        base = np.array(colour, dtype=np.float64)[None] * stripes[:, None]
        base[window] = (235, 245, 255)
        rgb[sel] = base
    floor = label == "floor"
    checker = (np.floor(points[..., 0][floor] / 0.6) + np.floor(points[..., 1][floor] / 0.6)) % 2
    rgb[floor] = np.where(checker[:, None] > 0, (110, 80, 60), (150, 115, 85))
    rgb[label == "ceiling"] = (235, 235, 228)
    # Shading with distance and incidence gives the monocular cues a depth network looks for.
    shade = np.clip(1.15 - 0.06 * best_t, 0.55, 1.0)
    rgb = np.clip(rgb * shade[..., None], 0, 255).astype(np.uint8)
    return rgb, best_t.astype(np.float32)


def main() -> None:
    out = Path(__file__).resolve().parents[1] / "dap_ros" / "assets"
    out.mkdir(parents=True, exist_ok=True)
    rgb, range_m = render()
    Image.fromarray(rgb).save(out / "sample_room.jpg", quality=90)
    save_range_png_mm(out / "sample_room_range_mm.png", range_m)
    print(f"wrote {out}/sample_room.jpg and sample_room_range_mm.png ({range_m.min():.2f}-{range_m.max():.2f} m)")


if __name__ == "__main__":
    main()
