# Copyright 2026 The flowclas_ros Authors
# SPDX-License-Identifier: Apache-2.0
"""Per-camera counters and their ``diagnostic_msgs/DiagnosticStatus`` (no diagnostic_updater).

Counters are totals since start; rates and latencies cover the last reporting window, so a
stall shows up at once instead of being averaged away.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
import math
import statistics
import threading

from diagnostic_msgs.msg import DiagnosticStatus, KeyValue

OK, WARN, ERROR, STALE = (
    DiagnosticStatus.OK,
    DiagnosticStatus.WARN,
    DiagnosticStatus.ERROR,
    DiagnosticStatus.STALE,
)


# A frame's way through the node, in order (``stage.<name>_ms`` in diagnostics): DDS transit from
# the publisher's send to the callback (Iron and newer), waiting for the worker, message to RGB,
# the core call (upload, network, calibration at the output size), the segments (``segments``:
# waiting for them or computing them, region consistency, then calibration), mask / colour map
# / overlay and their copy to the host, matching a depth image by stamp, points and regions
# with their messages, image arrays to messages, publishing.
STAGES = (
    'transit', 'queue', 'convert', 'inference', 'refine', 'postprocess', 'depth', 'points',
    'serialize', 'publish',
)  # fmt: skip
# Stages only frames with a subscriber to anomaly/points, regions or markers go through.
GEOMETRY_STAGES = ('depth', 'points')
# A stage only frames refined by segments go through.
SEGMENT_STAGES = ('refine',)


@dataclass
class Limits:
    """Bounds that turn numbers into a level (from the node's parameters)."""

    expected_rate_hz: float = 0.0
    max_latency_ms: float = 500.0
    input_timeout_s: float = 5.0
    input_warn_s: float = 1.0


# Diagnostics WARN when DDS loses more than this share of a window's frames, and at least
# LOST_WARN_MIN of them (one lost frame in a short window is not a collapse): with Fast DDS's
# built-in transports, camera-sized frames collapse to about a quarter (docs/reliability.md).
LOST_WARN_SHARE = 0.05
LOST_WARN_MIN = 3


@dataclass
class _Window:
    received: int = 0
    processed: int = 0
    lost: int = 0
    rejected: int = 0
    warnings: int = 0
    latencies: list[float] = field(default_factory=list)  # receive to publish, ms
    overheads: list[float] = field(default_factory=list)  # the same less the core call, ms
    stages: dict[str, list[float]] = field(default_factory=dict)  # per-stage times, ms


class CameraStats:
    """Thread-safe counts for one camera: the subscriber callback, worker and timer share it."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._lock = threading.Lock()
        self.received = 0
        self.processed = 0
        self.superseded = 0
        self.lost = 0
        self.skipped: Counter[str] = Counter()
        self.rejected: Counter[str] = Counter()
        self.warnings: Counter[str] = Counter()
        self.counts: Counter[str] = Counter()  # named totals that do not change the level
        self.notes: dict[str, str] = {}  # named states, reported as they are
        self.last_error = ''
        self.last_receive: float | None = None
        self.input_age_ms = math.nan
        self._window = _Window()
        self._window_start: float | None = None

    def on_receive(self, now: float) -> None:
        with self._lock:
            self.received += 1
            self._window.received += 1
            self.last_receive = now

    def on_superseded(self) -> None:
        with self._lock:
            self.superseded += 1

    def on_lost(self, count: int) -> None:
        """Frames the publisher sent that never reached the callback (sequence-number gaps)."""
        with self._lock:
            self.lost += count
            self._window.lost += count

    def on_skipped(self, reason: str) -> None:
        with self._lock:
            self.skipped[reason] += 1

    def on_rejected(self, reason: str, message: str) -> None:
        with self._lock:
            self.rejected[reason] += 1
            self._window.rejected += 1
            self.last_error = message

    def on_warning(self, key: str, message: str) -> None:
        """Something went wrong that is not a frame (an incompatible publisher, say)."""
        with self._lock:
            self.warnings[key] += 1
            self._window.warnings += 1
            self.last_error = message

    def count(self, key: str, n: int = 1) -> None:
        """Add ``n`` to the total reported as ``key`` (depth frames matched, points dropped)."""
        with self._lock:
            self.counts[key] += n

    def note(self, key: str, text: str) -> None:
        """Report ``key`` as ``text`` from now on (what an optional output is doing)."""
        with self._lock:
            self.notes[key] = text

    def on_processed(
        self, latency_s: float, stages_ms: dict[str, float], input_age_ms: float
    ) -> None:
        """One frame out: its receive-to-publish latency and the time of each stage on the way."""
        with self._lock:
            self.processed += 1
            self._window.processed += 1
            self._window.latencies.append(latency_s * 1000)
            self._window.overheads.append(latency_s * 1000 - stages_ms.get('inference', 0.0))
            for name, ms in stages_ms.items():
                self._window.stages.setdefault(name, []).append(ms)
            self.input_age_ms = input_age_ms

    def report(
        self,
        now: float,
        limits: Limits,
        model_problem: tuple[bytes, str] | None,
        info: dict[str, str],
    ) -> DiagnosticStatus:
        """Close the current window and describe it; ``model_problem`` (level, message) wins."""
        with self._lock:
            window, self._window = self._window, _Window()
            start, self._window_start = self._window_start, now
            last_rx, last_error = self.last_receive, self.last_error
            counts = {
                'frames_received': self.received,
                'frames_processed': self.processed,
                'frames_superseded': self.superseded,
                'frames_lost': self.lost,
                'frames_rejected': sum(self.rejected.values()),
                'frames_skipped': sum(self.skipped.values()),
            }
            counts |= {f'rejected.{k}': v for k, v in sorted(self.rejected.items())}
            counts |= {f'skipped.{k}': v for k, v in sorted(self.skipped.items())}
            counts |= {f'warning.{k}': v for k, v in sorted(self.warnings.items())}
            counts |= dict(sorted(self.counts.items())) | self.notes
            age = self.input_age_ms
        span = now - start if start is not None else 0.0
        in_rate = window.received / span if span > 0 else 0.0
        out_rate = window.processed / span if span > 0 else 0.0
        lat = window.latencies
        lat_mean = statistics.fmean(lat) if lat else math.nan

        level, message = OK, 'ok'
        if model_problem is not None:
            level, message = model_problem
        elif last_rx is None:
            level, message = STALE, 'waiting for the first frame'
        elif (stalled := _stalled(now - last_rx, limits)) is not None:
            level, message = stalled
        elif window.rejected or window.warnings:
            level, message = WARN, f'{window.rejected} frames rejected; last error: {last_error}'
        elif window.lost >= LOST_WARN_MIN and window.lost > LOST_WARN_SHARE * (
            window.lost + window.received
        ):
            level = WARN
            message = (
                f'DDS lost {window.lost} of {window.lost + window.received} frames from the '
                'camera; give its publisher config/fastdds_large_frames.xml (README)'
            )
        elif span > 0 and limits.expected_rate_hz > 0 and out_rate < limits.expected_rate_hz:
            level = WARN
            message = f'output {out_rate:.1f} Hz < expected {limits.expected_rate_hz:g} Hz'
        elif lat and lat_mean > limits.max_latency_ms:
            level, message = WARN, f'latency {lat_mean:.0f} ms > {limits.max_latency_ms:g} ms'

        values = {
            'input_rate_hz': f'{in_rate:.2f}',
            'output_rate_hz': f'{out_rate:.2f}',
            'latency_mean_ms': f'{lat_mean:.1f}',
            'latency_median_ms': f'{_median(lat):.1f}',
            'latency_max_ms': f'{max(lat, default=math.nan):.1f}',
            'inference_median_ms': f'{_median(window.stages.get("inference", [])):.1f}',
            'overhead_median_ms': f'{_median(window.overheads):.1f}',
            'input_age_ms': f'{age:.1f}',
            'last_error': last_error,
        }
        values = counts | values
        values |= {f'stage.{k}_ms': f'{_median(window.stages.get(k, [])):.2f}' for k in STAGES}
        values |= info
        status = DiagnosticStatus()
        status.level = level
        status.name = self.name
        status.message = message
        status.values = [KeyValue(key=k, value=str(v)) for k, v in values.items()]
        return status


def _stalled(idle_s: float, limits: Limits) -> tuple[bytes, str] | None:
    """ERROR after ``input_timeout_s`` without input, WARN after ``input_warn_s``, else None."""
    if idle_s > limits.input_timeout_s:
        return ERROR, f'no input for {idle_s:.1f} s'
    if idle_s > limits.input_warn_s:
        return WARN, f'no input for {idle_s:.1f} s'
    return None


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else math.nan
