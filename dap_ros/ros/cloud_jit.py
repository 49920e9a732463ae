"""Optional compiled point-cloud kernel (numba, the ``fast`` extra): one pass instead of eight.

The numpy path of :class:`dap_ros.ros.point_cloud.PointCloudBuilder` walks the record several times
(sub-sampling, validity, three multiplies, colour packing, the gather of valid points): ~2.3 ms
for 460 800 points alone, about twice that in the node where the other thread publishes at the
same time. These kernels read every kept pixel once and write its 16-byte point once, without
the GIL; the result is bit-identical (the same float32 products and comparisons, the same
packing). :class:`PointCloudBuilder` uses them when numba imports and ``DAP_ROS_JIT`` is not 0.

Importing this module imports numba (ImportError without it). Each new array layout compiles
once (~1 s; the node warms the kernels up at start); numba caches the machine code on disk.
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np
from numba import njit


@njit(cache=True, nogil=True)
def _count_points(range_m, stride, low, high):  # pragma: no cover - compiled
    n = 0
    for i in range(0, range_m.shape[0], stride):
        for j in range(0, range_m.shape[1], stride):
            r = range_m[i, j]
            if r >= low and r <= high and np.isfinite(r):
                n += 1
    return n


@njit(cache=True, nogil=True)
def _fill_points(range_m, rgb, with_rgb, stride, rgb_stride, rays, low, high, organized, out):  # pragma: no cover
    words = out.view(np.uint32)
    nan = np.float32(np.nan)
    k = 0
    for a in range(rays.shape[1]):
        i = a * stride
        for b in range(rays.shape[2]):
            j = b * stride
            r = range_m[i, j]
            if r >= low and r <= high and np.isfinite(r):
                out[k, 0] = r * rays[0, a, b]
                out[k, 1] = r * rays[1, a, b]
                out[k, 2] = r * rays[2, a, b]
            elif organized:
                out[k, 0] = nan
                out[k, 1] = nan
                out[k, 2] = nan
            else:
                continue
            if with_rgb:
                c, d = a * rgb_stride, b * rgb_stride  # the colours may be given for the strided grid only
                words[k, 3] = (np.uint32(rgb[c, d, 0]) << 16) | (np.uint32(rgb[c, d, 1]) << 8) | np.uint32(rgb[c, d, 2])
            k += 1
    return k


_NO_RGB = np.zeros((1, 1, 3), dtype=np.uint8)


def point_record(
    range_m: np.ndarray,
    rgb: np.ndarray | None,
    rays: np.ndarray,
    *,
    stride: int,
    min_range: float,
    max_range: float,
    organized: bool,
    allocate: Callable[[tuple[int, ...]], np.ndarray],
    rgb_stride: int | None = None,
) -> np.ndarray:
    """``PointCloudBuilder.record`` computed by the kernels (same layout, bit-identical values).

    ``rays``: the builder's (3, rows, cols) float32 planes; ``allocate(shape)``: the output array;
    ``rgb_stride``: the step between the colours of neighbouring points (1 when ``rgb`` holds the
    strided grid's colours only; default ``stride``).
    """
    fields = 3 if rgb is None else 4
    rows, cols = rays.shape[1], rays.shape[2]
    # float32 bounds: numpy compares the float32 range with Python floats as float32 too (NEP 50)
    low, high = np.float32(min_range), np.float32(max_range)
    count = rows * cols if organized else int(_count_points(range_m, stride, low, high))
    out = allocate((rows, cols, fields) if organized else (count, fields))
    flat = out.reshape(-1, fields)
    colours = _NO_RGB if rgb is None else rgb
    written = _fill_points(range_m, colours, rgb is not None, stride, stride if rgb_stride is None else rgb_stride,
                           rays, low, high, organized, flat)
    if written != count:  # only if the range changed meanwhile: never publish a torn cloud
        raise RuntimeError(f"point kernel wrote {written} points, counted {count}")
    return out


def warm_up() -> None:
    """Compile the kernels for the colour layouts the node meets (rgb8, bgr8/rgba8 views, read-only
    buffers) before the first frame: a few seconds once per machine, then numba's disk cache."""
    range_m = np.ones((4, 8), dtype=np.float32)
    rgb = np.zeros((4, 8, 4), dtype=np.uint8)
    readonly = rgb.copy()
    readonly.setflags(write=False)
    rays = np.ones((3, 2, 4), dtype=np.float32)
    for colours in (rgb[..., :3].copy(), rgb[..., 2::-1], readonly[..., :3], readonly[..., 2::-1]):
        point_record(range_m, colours, rays, stride=2, min_range=0.1, max_range=10.0, organized=False,
                     allocate=lambda shape: np.empty(shape, dtype=np.float32))

