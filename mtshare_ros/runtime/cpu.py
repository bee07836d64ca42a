"""Sharing the CPU with the rest of a robot: how many inference threads, and whether the worker is starved.

Measured on this package (issue 26): with one busy loop on one of two cores, OpenMP's default spin-waiting made
replay 7.6x slower (20.2 -> 2.65 fps); with ``OMP_WAIT_POLICY=PASSIVE`` it was 1.6x (12.6 fps): threads that spin
for a core another process holds burn the time slices their peers need. The node's process therefore starts
OpenMP passive (``ros/node.py`` sets it before torch loads; an explicit ``OMP_WAIT_POLICY`` wins), and with
``threads: auto`` takes as many intra-op threads as there are cores *free* at configure (the cores this process
may run on, ``sched_getaffinity``, less the load the rest of the machine puts on them, sampled from /proc/stat),
at least one. Thread placement is left to the OS scheduler: pinning to a core another process then loads was the
50x case. ``StarvationWatch`` compares the CPU time the process got during each frame with the wall time it took:
a worker that gets much less than its threads could use is waiting for cores (reported in /diagnostics).
"""

from __future__ import annotations

import os
import time
from collections import deque

STARVED_SHARE = 0.5
"""A frame whose process CPU time is below this fraction of (wall time x threads) waited for cores."""


def usable_cores() -> int:
    """Cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _cpu_times() -> tuple[float, float] | None:
    try:
        with open("/proc/stat") as f:
            parts = [float(v) for v in f.readline().split()[1:]]
    except OSError:
        return None
    idle = parts[3] + (parts[4] if len(parts) > 4 else 0.0)
    return sum(parts), idle


def busy_cores(sample_s: float = 0.3) -> float:
    """Cores' worth of load on the machine now, from /proc/stat over ``sample_s`` (0 where unknown), less this
    process's own share."""
    a, p0 = _cpu_times(), time.process_time()
    if a is None:
        return 0.0
    time.sleep(sample_s)
    b, p1 = _cpu_times(), time.process_time()
    total, idle = b[0] - a[0], b[1] - a[1]
    if total <= 0:
        return 0.0
    cores = os.cpu_count() or 1
    own = (p1 - p0) / sample_s
    return max(0.0, (1.0 - idle / total) * cores - own)


def choose_threads(setting: str, sample_s: float = 0.3) -> tuple[int, str]:
    """Intra-op threads for ``threads`` (``auto`` or a number) and why, for the log and /diagnostics."""
    if setting != "auto":
        return int(setting), f"threads: {setting} (as set)"
    cores = usable_cores()
    busy = busy_cores(sample_s)
    n = max(1, min(cores, int(round(cores - busy))))
    return n, f"threads: auto -> {n} ({cores} usable cores, {busy:.1f} busy with other work at configure)"


class StarvationWatch:
    """Per frame: the process's CPU time over (wall time x threads); a window's median below ``STARVED_SHARE``
    means the worker waits for cores it does not get."""

    def __init__(self, threads: int, window: int = 30) -> None:
        self.threads = max(1, threads)
        self._shares: deque[float] = deque(maxlen=window)
        self._t: tuple[float, float] | None = None

    def begin(self) -> None:
        self._t = (time.perf_counter(), time.process_time())

    def end(self) -> None:
        if self._t is None:
            return
        wall, cpu = time.perf_counter() - self._t[0], time.process_time() - self._t[1]
        self._t = None
        if wall > 1e-3:
            self._shares.append(min(1.0, cpu / (wall * self.threads)))

    def share(self) -> float:
        """Median CPU share of recent frames (1 = every thread ran all the time); NaN before any frame."""
        if not self._shares:
            return float("nan")
        s = sorted(self._shares)
        return s[len(s) // 2]

    def starved(self) -> bool:
        return len(self._shares) >= 5 and self.share() < STARVED_SHARE
