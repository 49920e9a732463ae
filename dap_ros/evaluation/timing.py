"""Latency summaries shared by the offline report and the realtime replay."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def latency_summary_ms(values_ms: Sequence[float]) -> dict[str, float | int | None]:
    """mean / p50 / p95 / p99 / max (milliseconds) and count; None values when empty."""
    if len(values_ms) == 0:
        return {"mean": None, "p50": None, "p95": None, "p99": None, "max": None, "count": 0}
    a = np.asarray(values_ms, dtype=np.float64)
    p50, p95, p99 = np.percentile(a, [50, 95, 99])
    return {"mean": float(a.mean()), "p50": float(p50), "p95": float(p95), "p99": float(p99),
            "max": float(a.max()), "count": int(a.size)}
