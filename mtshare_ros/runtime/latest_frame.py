"""Latest-frame policy: one worker thread, one waiting slot per stream, newer frames replace the waiting one.

Inference is slower than many cameras. A queue would grow latency without bound; this keeps at
most one frame waiting, so latency stays bounded by roughly two inference times, and counts what
it dropped so the node can report it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Collection
from typing import Generic, TypeVar

T = TypeVar("T")


class SlotCounts:
    """One slot's frame counts (one camera's)."""

    def __init__(self) -> None:
        self.submitted = 0
        self.dropped = 0
        self.processed = 0
        self.failed = 0


class LatestFramesWorker(Generic[T]):
    """The latest-frame policy for several streams through one worker thread: one waiting slot per key (camera),
    a newer frame replaces the waiting one of its own key only, and the worker takes every waiting frame at once,
    ``process(batch)`` with ``batch`` a {key: item} dict, so frames of different cameras waiting at the same time
    go through one pass. ``process`` returns the keys whose frames failed (their exception went to ``on_error``
    already); an exception out of ``process`` itself counts every frame of the batch as failed. A key that stops
    submitting leaves nothing waiting: the others are not held back by it."""

    def __init__(self, process: Callable[[dict[str, T]], Collection[str]],
                 on_error: Callable[[str, BaseException], None], name: str = "mtshare-inference") -> None:
        self._process = process
        self._on_error = on_error
        self._name = name
        self._cond = threading.Condition()
        self._pending: dict[str, T] = {}
        self._running = False
        self._thread: threading.Thread | None = None
        self.counts: dict[str, SlotCounts] = {}

    def count(self, key: str) -> SlotCounts:
        with self._cond:
            return self.counts.setdefault(key, SlotCounts())

    def start(self) -> None:
        with self._cond:
            if self._running:
                return
            self._running = True
        self._thread = threading.Thread(target=self._loop, name=self._name, daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop after the batch in progress; waiting frames are discarded (and counted as dropped)."""
        with self._cond:
            self._running = False
            for key in self._pending:
                self.counts.setdefault(key, SlotCounts()).dropped += 1
            self._pending = {}
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def submit(self, key: str, item: T) -> None:
        """Offer a frame of stream ``key``; replaces (and counts as dropped) that stream's frame still waiting."""
        with self._cond:
            c = self.counts.setdefault(key, SlotCounts())
            c.submitted += 1
            if key in self._pending:
                c.dropped += 1
            self._pending[key] = item
            self._cond.notify()

    def _loop(self) -> None:
        while True:
            with self._cond:
                while self._running and not self._pending:
                    self._cond.wait()
                if not self._running:
                    return
                batch, self._pending = self._pending, {}
            try:
                failed = set(self._process(batch))
            except Exception as exc:  # keep serving frames; the owner reports the cause
                failed = set(batch)
                for key in batch:
                    self._on_error(key, exc)
            with self._cond:
                for key in batch:
                    c = self.counts.setdefault(key, SlotCounts())
                    if key in failed:
                        c.failed += 1
                    else:
                        c.processed += 1
