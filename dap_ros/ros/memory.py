"""Keep the node's multi-MB per-frame buffers in the heap instead of fresh mmap()s (glibc).

Every frame allocates and frees several 2-16 MB buffers (the decoded input, tensors, the depth
image, the point record, serialized messages). glibc serves blocks above its mmap threshold with a
fresh mmap() and returns them with munmap() on free, so every page of every such buffer faults and
is zeroed by the kernel again on the next frame: ~29 000 minor page faults per frame at 1920x960
in benchmarks/node_benchmark.py, which made message building 2.5x slower and inference 1.4x slower.
Raising the mmap threshold to its maximum (32 MiB) and keeping freed memory in the heap makes the
buffers recycle (36 faults per frame). The price is that the process keeps its peak heap
(RSS stays at the high-water mark instead of shrinking between frames) — the right trade for a
node that processes frames of one size for hours.

Skipped when the user already tunes malloc (MALLOC_MMAP_THRESHOLD_ / MALLOC_TRIM_THRESHOLD_ /
GLIBC_TUNABLES set), when DAP_ROS_MALLOC_TUNING=0, or when the C library is not glibc.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os
import platform

from dap_ros.ros.env import switched_off

# <malloc.h>
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD_BYTES = 32 * 1024 * 1024  # glibc's maximum on 64-bit (HEAP_MAX_SIZE / 2)
TRIM_THRESHOLD_BYTES = 1024 * 1024 * 1024  # return freed heap to the OS only beyond 1 GiB
_USER_SETTINGS = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "GLIBC_TUNABLES")


def tune_malloc_for_large_frames() -> str:
    """Apply the settings above; returns what was done, for the log."""
    if switched_off("DAP_ROS_MALLOC_TUNING"):
        return "malloc tuning disabled by DAP_ROS_MALLOC_TUNING"
    user = [name for name in _USER_SETTINGS if os.environ.get(name)]
    if user:
        return f"malloc tuning left to the user ({', '.join(user)} set)"
    libc_name, _version = platform.libc_ver()
    if libc_name != "glibc":
        return "malloc tuning skipped (not glibc)"
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        ok = libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES) == 1
        ok = libc.mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES) == 1 and ok
    except (OSError, AttributeError) as exc:
        return f"malloc tuning skipped ({exc})"
    if not ok:
        return "malloc tuning refused by mallopt()"
    return "glibc malloc: buffers up to 32 MiB recycled in the heap (no per-frame page faults)"
