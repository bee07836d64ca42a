"""A latency budget per camera: adapt what a frame costs so that the camera's p95 latency stays within it.

Steps, cheapest loss first (each camera climbs and descends them on its own):

1. token caps: ``sharing.max_token_fraction`` and ``temporal.max_token_fraction`` halved per step (down to
   ``MIN_CAP``): sub-tasks and temporal frames recompute fewer tokens (accuracy degrades gracefully, the outputs
   stay);
2. optional outputs: the colour images and the point cloud are no longer made (the raw maps still are);
3. frame rate: only every 2nd, then 4th, 8th frame of the camera is processed (the others are dropped).

The controller looks at the p95 of the camera's last ``WINDOW`` frame latencies: above the budget it takes one step
down (and waits ``WINDOW // 2`` frames to see its effect); below ``RESTORE`` x budget it takes one step back up.
What it did and why is ``describe()``, in the camera's /diagnostics status.
"""

from __future__ import annotations

from collections import deque
from dataclasses import replace

import numpy as np

from mtshare_ros.runtime.settings import FrameSettings

WINDOW = 10
RESTORE = 0.6
MIN_CAP = 0.02
CAP_STEPS = 3
OUTPUT_STEP = CAP_STEPS + 1
RATE_STEPS = 3
OPTIONAL_OUTPUTS = frozenset({"points"})
"""Outputs step 2 stops making (besides every ``<task>/color``)."""


class LatencyBudget:
    """One camera's controller (see the module docstring)."""

    def __init__(self) -> None:
        self.level = 0
        self.reason = ""
        self._lat: deque[float] = deque(maxlen=WINDOW)
        self._wait = 0
        self._frame = 0

    def observe(self, latency_ms: float, budget_ms: float) -> None:
        """A processed frame's latency; may move one step."""
        if budget_ms <= 0:
            if self.level:
                self.level, self.reason = 0, "budget off"
            self._lat.clear()
            return
        self._lat.append(latency_ms)
        if self._wait:
            self._wait -= 1
            return
        if len(self._lat) < WINDOW // 2:
            return
        p95 = float(np.percentile(self._lat, 95))
        top = CAP_STEPS + 1 + RATE_STEPS
        if p95 > budget_ms and self.level < top:
            self.level += 1
            self.reason = f"p95 {p95:.0f} ms > budget {budget_ms:.0f} ms: {self.describe_level()}"
            self._wait = WINDOW // 2
            self._lat.clear()
        elif p95 < RESTORE * budget_ms and self.level > 0:
            self.level -= 1
            self.reason = f"p95 {p95:.0f} ms < {RESTORE:g} x budget: back to {self.describe_level()}"
            self._wait = WINDOW // 2
            self._lat.clear()

    def cap_factor(self) -> float:
        return 0.5 ** min(self.level, CAP_STEPS)

    def settings(self, settings: FrameSettings) -> FrameSettings:
        """``settings`` with this camera's token caps."""
        if self.level == 0:
            return settings
        f = self.cap_factor()
        sharing = replace(settings.sharing, max_token_fraction=max(MIN_CAP, settings.sharing.max_token_fraction * f))
        temporal = replace(settings.temporal,
                           max_token_fraction=max(MIN_CAP, settings.temporal.max_token_fraction * f))
        return replace(settings, sharing=sharing, temporal=temporal)

    def wanted(self, wanted: set[str]) -> set[str]:
        """The visualisation outputs still made."""
        if self.level < OUTPUT_STEP:
            return wanted
        return {w for w in wanted if not w.endswith("/color") and w not in OPTIONAL_OUTPUTS}

    def rate_divisor(self) -> int:
        return 2 ** max(0, self.level - OUTPUT_STEP)

    def take(self) -> bool:
        """Whether this camera's next frame is processed (frame-rate step)."""
        self._frame += 1
        return self._frame % self.rate_divisor() == 0

    def describe_level(self) -> str:
        if self.level == 0:
            return "nominal (nothing reduced)"
        parts = [f"token caps x{self.cap_factor():g}"]
        if self.level >= OUTPUT_STEP:
            parts.append("no colour/points outputs")
        if self.rate_divisor() > 1:
            parts.append(f"1 frame in {self.rate_divisor()}")
        return ", ".join(parts)
