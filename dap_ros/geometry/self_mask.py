"""A starting self mask from a few range images of a static scene: the robot is what stays near
and does not change."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def self_mask_from_ranges(ranges: Sequence[np.ndarray], near: float, spread: float, grow: int = 2) -> np.ndarray:
    """uint8 (H, W) mask, 0 = the robot, 255 = the world, from range images (metres) of one camera.

    A pixel is the robot where its median range is below ``near`` metres and its ranges vary by
    less than ``spread`` (relative: (max - min) / median) across the frames; the mask then grows by
    ``grow`` pixels (wrapping around the panorama's seam) to cover edges. Move the robot (or the
    scene) between frames: a wall that stays near and still would be masked too.
    """
    if len(ranges) < 2:
        raise ValueError("a self mask needs at least two frames (what changes between them is the world)")
    stack = np.stack([np.asarray(r, dtype=np.float64) for r in ranges])
    with np.errstate(invalid="ignore"):
        median = np.nanmedian(stack, axis=0)
        relative = (np.nanmax(stack, axis=0) - np.nanmin(stack, axis=0)) / median
        robot = np.isfinite(median) & (median < near) & (relative < spread)
    for _ in range(grow):
        grown = robot.copy()
        grown[1:] |= robot[:-1]
        grown[:-1] |= robot[1:]
        grown |= np.roll(robot, 1, axis=1) | np.roll(robot, -1, axis=1)
        robot = grown
    return np.where(robot, 0, 255).astype(np.uint8)
