"""The node's inputs besides single camera frames: lens pairs from two topics, and the IMU tilt.

Both are called from the executor's callbacks and read by the inference thread, so each guards
its state with a lock. They only read message fields (header stamps, orientation), so they are
tested without DDS.
"""
from __future__ import annotations

import threading
from collections import deque
from typing import Any

import numpy as np

from dap_ros.geometry.rotation import quaternion_matrix, roll_pitch, tilt_matrix


def stamp_ns(msg: Any) -> int:
    return int(msg.header.stamp.sec) * 1_000_000_000 + int(msg.header.stamp.nanosec)


class LensPairer:
    """Pairs the frames of two lens topics by header stamp (``message_filters``' approximate time
    policy is not on PyPI). A pair is released as soon as both lenses have a frame within
    ``tolerance_ns`` of each other; older frames of either lens are dropped with it."""

    def __init__(self, tolerance_ns: int, keep: int = 4) -> None:
        self.tolerance_ns = tolerance_ns
        self._pending: tuple[deque, deque] = (deque(maxlen=keep), deque(maxlen=keep))
        self._lock = threading.Lock()
        self.unpaired = 0  # frames dropped without a partner

    def add(self, lens: int, msg: Any) -> tuple[Any, Any] | None:
        """File ``msg`` of lens 0 or 1; the (lens 0, lens 1) pair it completes, or None."""
        stamp = stamp_ns(msg)
        with self._lock:
            mine, other = self._pending[lens], self._pending[1 - lens]
            if len(mine) == mine.maxlen:
                self.unpaired += 1
            mine.append((stamp, msg))
            best = min(other, key=lambda item: abs(item[0] - stamp), default=None)
            if best is None or abs(best[0] - stamp) > self.tolerance_ns:
                return None
            while other and other[0][0] <= best[0]:  # the partner and anything older on its side
                if other.popleft()[0] != best[0]:
                    self.unpaired += 1
            while mine:
                if mine.popleft()[0] != stamp:
                    self.unpaired += 1
            return (msg, best[1]) if lens == 0 else (best[1], msg)


class ImuTilt:
    """Recent IMU orientations; the roll/pitch levelling rotation nearest to a frame's stamp.

    The IMU's frame is taken to be aligned with the output frame (frame_id); its orientation is in
    a gravity-aligned world frame (REP 145), so its roll and pitch are the output frame's tilt.
    """

    def __init__(self, keep: int = 400) -> None:
        self._samples: deque[tuple[int, np.ndarray]] = deque(maxlen=keep)
        self._lock = threading.Lock()
        self.rejected = 0  # samples without a usable orientation

    def add(self, msg: Any) -> None:
        q = msg.orientation
        if msg.orientation_covariance[0] == -1.0:  # the driver says: no orientation estimate
            self.rejected += 1
            return
        try:
            tilt = tilt_matrix(quaternion_matrix(q.x, q.y, q.z, q.w))
        except ValueError:
            self.rejected += 1
            return
        with self._lock:
            self._samples.append((stamp_ns(msg), tilt))

    def at(self, stamp: int, timeout_ns: int) -> tuple[np.ndarray | None, str]:
        """(the tilt nearest to ``stamp``, "") or (None, why not) when none is within ``timeout_ns``."""
        with self._lock:
            best = min(self._samples, key=lambda item: abs(item[0] - stamp), default=None)
        if best is None:
            return None, "no IMU message received yet" + (
                f" ({self.rejected} without an orientation)" if self.rejected else "")
        gap = abs(best[0] - stamp)
        if gap > timeout_ns:
            return None, f"nearest IMU sample is {gap * 1e-9:.3f} s from the frame's stamp"
        return best[1], ""


def tilt_degrees(tilt: np.ndarray | None) -> str:
    """'roll R, pitch P' in degrees, for diagnostics."""
    if tilt is None:
        return "none"
    roll, pitch = roll_pitch(tilt)
    return f"roll {np.degrees(roll):.1f}, pitch {np.degrees(pitch):.1f}"
