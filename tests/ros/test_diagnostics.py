"""NodeStats: the per-frame overhead statistics the node reports (mean, p50, p95)."""
from __future__ import annotations

import math

import pytest

from dap_ros.ros.diagnostics import LATENCY_WINDOW, NodeStats, status_values


def _frame(stats: NodeStats, overhead_ms: float) -> None:
    # the overhead is split over the non-inference stages; inference never counts
    part = overhead_ms / 5e3
    stats.output(0.0, {"decode": part, "preprocess": part, "inference": 0.5, "postprocess": part,
                       "build": part, "publish": part}, age_sec=0.1)


def test_overhead_mean_and_percentiles_over_the_window():
    stats = NodeStats()
    for _ in range(LATENCY_WINDOW):  # an old, slow window that must age out
        _frame(stats, 100.0)
    for value in range(1, LATENCY_WINDOW + 1):  # 1 .. 50 ms
        _frame(stats, float(value))
    snap = stats.snapshot(0.0)
    assert snap.overhead_ms == pytest.approx((LATENCY_WINDOW + 1) / 2)
    assert snap.overhead_p50_ms == pytest.approx(LATENCY_WINDOW // 2)
    assert snap.overhead_p95_ms == pytest.approx(math.ceil(0.95 * LATENCY_WINDOW))  # nearest rank
    values = dict(status_values(snap, {}))
    assert values["node overhead p50 (ms)"] == f"{snap.overhead_p50_ms:.2f}"


def test_no_frame_yet_reports_zero():
    snap = NodeStats().snapshot(0.0)
    assert (snap.overhead_ms, snap.overhead_p50_ms, snap.overhead_p95_ms) == (0.0, 0.0, 0.0)
