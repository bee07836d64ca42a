"""Giving freed heap memory back to the operating system, so a node's resident memory stays flat for days.

glibc keeps memory that Python, NumPy and PyTorch free on its heaps for reuse. After a frame of a new size
(a camera restarting at another resolution, a changed output size or task set) the buffers of the old size
are freed but stay resident, and the heap grows by their size for good: the soak benchmark saw +4% after
a resolution change. ``malloc_trim`` returns the free parts; it costs about 1 ms, so it runs after the first
frame of each new shape and every ``every`` frames, not on every frame. Elsewhere than glibc it is a no-op.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
from collections.abc import Hashable


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
    """Trims the heap after the first frame of each new frame shape and every ``every`` frames."""

    def __init__(self, every: int = 300) -> None:
        self.every = every
        self._shape: Hashable = None
        self._since = 0
        self.trims = 0

    def after_frame(self, shape: Hashable) -> bool:
        """Call once a frame is done; ``shape`` is whatever sets the frame's buffer sizes. True if it trimmed."""
        self._since += 1
        if shape == self._shape and self._since < self.every:
            return False
        self._shape, self._since = shape, 0
        self.trims += trim_heap()
        return True
