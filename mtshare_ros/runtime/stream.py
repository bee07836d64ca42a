"""Watching a camera stream for the breaks that make earlier frames useless to the next one.

Temporal sharing reuses the previous frames; that is only right while the frames are one continuous stream.
A stamp that goes backwards (a bag looping, a driver restarting), a gap longer than ``max_gap`` seconds
(dropped connection, a paused bag), another ``frame_id`` (another camera on the same topic) or another image
size all start a new stream: the caller resets the temporal cache, and the next frame is a keyframe.
"""

from __future__ import annotations

from dataclasses import dataclass


def stamp_seconds(stamp) -> float:
    """A header stamp (builtin_interfaces/Time: ``sec``, ``nanosec``) as float seconds, the stream's time line."""
    return stamp.sec + stamp.nanosec * 1e-9


@dataclass
class StreamWatch:
    """Remembers the last frame of a stream; ``observe`` says why a frame starts a new stream, or ''."""

    max_gap: float = 0.5
    _stamp: float | None = None
    _frame_id: str | None = None
    _size: tuple[int, int] | None = None

    def observe(self, stamp: float, frame_id: str, size: tuple[int, int]) -> str:
        """Record a frame (stamp in seconds); return the reason it breaks the stream ('' if it does not)."""
        reason = ""
        if self._stamp is not None:
            if stamp < self._stamp:
                reason = f"stamp went back {self._stamp - stamp:.3f} s"
            elif stamp - self._stamp > self.max_gap:
                reason = f"stamp gap {stamp - self._stamp:.3f} s > {self.max_gap} s"
            elif frame_id != self._frame_id:
                reason = f"frame_id changed from {self._frame_id!r} to {frame_id!r}"
            elif size != self._size:
                reason = f"image size changed from {self._size[1]}x{self._size[0]} to {size[1]}x{size[0]}"
        self._stamp, self._frame_id, self._size = stamp, frame_id, size
        return reason
