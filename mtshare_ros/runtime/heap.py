"""Giving freed heap memory back to the operating system, so a node's resident memory stays flat for days.

glibc keeps memory that Python, NumPy and PyTorch free on its heaps for reuse. After a frame of a new
configuration (a camera restarting at another resolution; changed settings, such as temporal sharing switched
off, or outputs) what the old one held is freed but stays resident, and the heap grows by its size for good: the
soak benchmark saw +4% after a resolution change. ``malloc_trim`` returns the free parts; it costs about 1 ms,
so it runs after the first frame of each new configuration and every ``every`` frames, not on every frame.
Elsewhere than glibc it is a no-op.

What it cannot undo: a heap shrinks only from its top, and a configuration that needed more memory (640x360
frames with temporal sharing's buffers and keyframe weights) grows it; small objects allocated meanwhile stay
near the top (not tensors of ours: with MKL's and oneDNN's caches off and no weights rebuilt, the heap still kept
22 MiB of its growth), so the heap keeps that extent, and the next frames' allocations, which vary in size from
frame to frame, spread over its free memory and touch it again. The soak's events replayed on a node: memory in
use back within 0.4% (MKL's and oneDNN's own caches), resident memory +2.2-2.7% (-0.4% right after a trim), the
same after a second round trip: bounded by the most demanding configuration, not growing. Trimming after every
frame would hold it down at the price of faulting a frame's memory in again every time (measured 6,400 page
faults, 25 MiB, per frame).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools


@functools.lru_cache(maxsize=1)
def _malloc_trim():
    name = ctypes.util.find_library("c")
    try:
        return ctypes.CDLL(name).malloc_trim if name else None
    except (OSError, AttributeError):  # not glibc (musl, macOS): nothing to trim
        return None


def trim_heap() -> bool:
    """Return freed heap memory to the OS; False where the C library cannot (not glibc)."""
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True


class HeapTrimmer:
    """Trims the heap after the first frame of each new configuration and every ``every`` frames."""

    def __init__(self, every: int = 300) -> None:
        self.every = every
        self._key: object = None
        self._since = 0
        self.trims = 0

    def after_frame(self, key: object) -> bool:
        """Call once a frame is done; ``key`` is what the frame's memory depends on (its shape, settings, outputs),
        compared with ``==``. True if it trimmed."""
        self._since += 1
        if key == self._key and self._since < self.every:
            return False
        self._key, self._since = key, 0
        self.trims += trim_heap()
        return True
