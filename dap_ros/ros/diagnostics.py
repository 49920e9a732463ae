"""Node health bookkeeping and the DiagnosticArray it turns into.

Built directly on diagnostic_msgs (diagnostic_updater is not on PyPI). ``NodeStats`` is written
by the subscription callback and the inference thread and read by the diagnostics timer, so every
access goes through one lock; the critical sections are a few appends.
"""
from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

STAGES = ("decode", "preprocess", "inference", "postprocess", "build", "publish")
OVERHEAD_STAGES = tuple(s for s in STAGES if s != "inference")  # what the node adds to the model
RATE_WINDOW_SEC = 5.0
LATENCY_WINDOW = 50  # frames averaged per stage

OK, WARN, ERROR = b"\x00", b"\x01", b"\x02"  # diagnostic_msgs/DiagnosticStatus levels (byte)


class RateMeter:
    """Events per second over the last ``window`` seconds (monotonic clock)."""

    def __init__(self, window: float = RATE_WINDOW_SEC) -> None:
        self.window = window
        self._times: deque[float] = deque()

    def tick(self, now: float) -> None:
        self._times.append(now)
        self._trim(now)

    def rate(self, now: float) -> float:
        self._trim(now)
        if len(self._times) < 2:
            return 0.0
        # intervals over the span they cover; a stopped stream reads 0 once its ticks age out
        return (len(self._times) - 1) / max(self._times[-1] - self._times[0], 1e-9)

    def _trim(self, now: float) -> None:
        while self._times and now - self._times[0] > self.window:
            self._times.popleft()


@dataclass
class Snapshot:
    """A consistent copy of the statistics for one diagnostics message."""

    received: int
    processed: int
    dropped: int
    rejected: dict[str, int]
    input_rate: float
    output_rate: float
    stage_ms: dict[str, float]
    overhead_ms: float  # mean of the last LATENCY_WINDOW frames
    overhead_p50_ms: float  # and its percentiles: the typical frame and the slow ones
    overhead_p95_ms: float
    last_age_ms: float | None
    since_input_sec: float | None
    consecutive_failures: int
    last_error: str


@dataclass
class NodeStats:
    """Counters, rates and per-stage latencies of the depth node (thread-safe)."""

    received: int = 0
    processed: int = 0
    dropped: int = 0
    rejected: dict[str, int] = field(default_factory=dict)
    consecutive_failures: int = 0
    last_error: str = ""
    last_age_sec: float | None = None
    last_input_time: float | None = None
    started: float = field(default_factory=time.monotonic)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._in_rate = RateMeter()
        self._out_rate = RateMeter()
        self._stages: dict[str, deque[float]] = {s: deque(maxlen=LATENCY_WINDOW) for s in STAGES}
        self._overhead: deque[float] = deque(maxlen=LATENCY_WINDOW)

    def input(self, now: float) -> None:
        with self._lock:
            self.received += 1
            self.last_input_time = now
            self._in_rate.tick(now)

    def drop(self) -> None:
        with self._lock:
            self.dropped += 1

    def failure(self, kind: str, message: str) -> None:
        with self._lock:
            self.rejected[kind] = self.rejected.get(kind, 0) + 1
            self.consecutive_failures += 1
            self.last_error = f"{kind}: {message}"

    def output(self, now: float, stage_sec: dict[str, float], age_sec: float | None) -> None:
        with self._lock:
            self.processed += 1
            self.consecutive_failures = 0
            self.last_age_sec = age_sec
            self._out_rate.tick(now)
            for stage, seconds in stage_sec.items():
                if stage in self._stages:
                    self._stages[stage].append(seconds)
            self._overhead.append(sum(stage_sec.get(s, 0.0) for s in OVERHEAD_STAGES))

    def snapshot(self, now: float) -> Snapshot:
        with self._lock:
            return Snapshot(
                received=self.received,
                processed=self.processed,
                dropped=self.dropped,
                rejected=dict(self.rejected),
                input_rate=self._in_rate.rate(now),
                output_rate=self._out_rate.rate(now),
                stage_ms={s: _mean_ms(v) for s, v in self._stages.items()},
                overhead_ms=_mean_ms(self._overhead),
                overhead_p50_ms=_percentile_ms(self._overhead, 50),
                overhead_p95_ms=_percentile_ms(self._overhead, 95),
                last_age_ms=None if self.last_age_sec is None else 1e3 * self.last_age_sec,
                since_input_sec=None if self.last_input_time is None else now - self.last_input_time,
                consecutive_failures=self.consecutive_failures,
                last_error=self.last_error,
            )


def _mean_ms(values: Iterable[float]) -> float:
    values = list(values)
    return 1e3 * sum(values) / len(values) if values else 0.0


def _percentile_ms(values: Iterable[float], q: float) -> float:
    """Nearest-rank percentile ``q`` (0-100) in ms; 0 without values."""
    ordered = sorted(values)
    if not ordered:
        return 0.0
    rank = max(1, math.ceil(q / 100.0 * len(ordered)))
    return 1e3 * ordered[rank - 1]


def level_and_message(
    snap: Snapshot, *, active: bool, started_sec_ago: float, stale_input_sec: float, error_after: int,
    fallback: str | None = None,
) -> tuple[bytes, str]:
    """Overall status: ERROR after repeated failures, WARN without input for a while or when running
    on a fallback backend (``fallback``: why), else OK."""
    if snap.consecutive_failures >= error_after:
        return ERROR, f"{snap.consecutive_failures} consecutive frames failed; last: {snap.last_error}"
    if not active:
        return OK, "inactive (lifecycle)"
    silent = snap.since_input_sec if snap.since_input_sec is not None else started_sec_ago
    if silent >= stale_input_sec:
        return WARN, f"no input image for {silent:.1f} s (check the remapping of 'image' and the QoS)"
    if fallback:
        return WARN, f"running at {snap.output_rate:.1f} Hz on a fallback backend (see 'backend fallback')"
    return OK, f"running at {snap.output_rate:.1f} Hz"


def status_values(snap: Snapshot, info: dict[str, str]) -> list[tuple[str, str]]:
    """The key/value list of the status (static ``info`` first: backend, device, model...)."""
    values = list(info.items())
    values += [
        ("input rate (Hz)", f"{snap.input_rate:.2f}"),
        ("output rate (Hz)", f"{snap.output_rate:.2f}"),
        ("frames received", str(snap.received)),
        ("frames processed", str(snap.processed)),
        ("frames dropped (newest-only)", str(snap.dropped)),
        ("frames rejected", str(sum(snap.rejected.values()))),
    ]
    values += [(f"rejected: {kind}", str(n)) for kind, n in sorted(snap.rejected.items())]
    values += [(f"latency {stage} (ms)", f"{ms:.2f}") for stage, ms in snap.stage_ms.items()]
    values += [
        ("node overhead (ms)", f"{snap.overhead_ms:.2f}"),
        ("node overhead p50 (ms)", f"{snap.overhead_p50_ms:.2f}"),
        ("node overhead p95 (ms)", f"{snap.overhead_p95_ms:.2f}"),
        ("output age (ms)", "n/a" if snap.last_age_ms is None else f"{snap.last_age_ms:.1f}"),
        ("consecutive failures", str(snap.consecutive_failures)),
        ("last error", snap.last_error or "none"),
    ]
    return values


def diagnostic_array(stamp: Any, name: str, hardware_id: str, level: bytes, message: str,
                     values: list[tuple[str, str]]) -> Any:
    """One DiagnosticStatus wrapped in a DiagnosticArray."""
    from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue

    status = DiagnosticStatus(level=level, name=name, message=message, hardware_id=hardware_id)
    status.values = [KeyValue(key=k, value=v) for k, v in values]
    array = DiagnosticArray()
    array.header.stamp = stamp
    array.status = [status]
    return array


class KindThrottle:
    """Rate-limits log lines per kind of problem: the first of a kind at once, then at most one
    per ``period`` seconds carrying the count of those suppressed in between.

    rclpy's ``throttle_duration_sec`` keys on the call site, which would let one frequent kind of
    bad input hide every other kind logged from the same line.
    """

    def __init__(self, period: float = 10.0) -> None:
        self.period = period
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}
        self._lock = threading.Lock()

    def check(self, kind: str, now: float) -> int | None:
        """None: stay quiet; else log now, mentioning the returned count of suppressed repeats."""
        with self._lock:
            last = self._last.get(kind)
            if last is not None and now - last < self.period:
                self._suppressed[kind] = self._suppressed.get(kind, 0) + 1
                return None
            self._last[kind] = now
            return self._suppressed.pop(kind, 0)
