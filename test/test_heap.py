"""runtime/heap.py: freed heap memory goes back to the OS, after new shapes and every N frames."""

from __future__ import annotations

import subprocess
import sys

import pytest

from mtshare_ros.runtime.heap import HeapTrimmer, trim_heap

# Frees most of 200 MiB of heap blocks (below the mmap threshold, so they live on the heap) and keeps every
# tenth alive; prints resident MiB before and after trim_heap().
PROBE = """
import os
from mtshare_ros.runtime.heap import trim_heap
def rss():
    return int(open('/proc/self/statm').read().split()[1]) * os.sysconf('SC_PAGE_SIZE') / 2**20
blocks = [bytearray(64 * 1024) for _ in range(3200)]
kept = blocks[::10]
del blocks
before = rss()
assert trim_heap()
print(before, rss())
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc_trim and /proc are Linux's")
def test_trim_returns_freed_heap_memory_to_the_os():
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, check=True).stdout
    before, after = (float(v) for v in out.split())
    assert before - after > 100, (before, after)  # most of the ~180 MiB freed comes back


def test_trimmer_trims_after_a_new_shape_and_every_n_frames():
    trimmer = HeapTrimmer(every=5)
    done = [trimmer.after_frame((480, 640)) for _ in range(12)]
    assert done == [True, False, False, False, False, True, False, False, False, False, True, False]
    assert trimmer.after_frame((360, 640)) and not trimmer.after_frame((360, 640))
    assert trimmer.trims == (4 if trim_heap() else 0)  # 3 every-5 trims + 1 for the new shape
