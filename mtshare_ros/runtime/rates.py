"""Rolling throughput and latency statistics for diagnostics and benchmarks."""

from __future__ import annotations

import collections
import threading
import time

import numpy as np


class RollingStats:
    """Keeps the last ``window`` samples of named timings and the completion times for fps."""

    def __init__(self, window: int = 100) -> None:
        self._lock = threading.Lock()
        self._samples: dict[str, collections.deque[float]] = collections.defaultdict(
            lambda: collections.deque(maxlen=window)
        )
        self._values: dict[str, collections.deque[float]] = collections.defaultdict(
            lambda: collections.deque(maxlen=window)
        )
        self._done: collections.deque[float] = collections.deque(maxlen=window)

    def add(self, **values_ms: float) -> None:
        with self._lock:
            for k, v in values_ms.items():
                self._samples[k].append(float(v))
            self._done.append(time.monotonic())

    def add_value(self, **values: float) -> None:
        """Samples that are not timings of a completed frame (e.g. 1.0 for a keyframe, 0.0 otherwise)."""
        with self._lock:
            for k, v in values.items():
                self._values[k].append(float(v))

    def mean(self, name: str) -> float:
        """Mean of the kept samples of a value added with ``add_value``."""
        with self._lock:
            s = self._values.get(name)
            return float(np.mean(np.asarray(s))) if s else float("nan")

    def fps(self) -> float:
        with self._lock:
            if len(self._done) < 2:
                return 0.0
            span = self._done[-1] - self._done[0]
            return (len(self._done) - 1) / span if span > 0 else 0.0

    def percentile(self, name: str, q: float) -> float:
        with self._lock:
            s = self._samples.get(name)
            return float(np.percentile(np.asarray(s), q)) if s else float("nan")

    def names(self) -> list[str]:
        with self._lock:
            return list(self._samples)
