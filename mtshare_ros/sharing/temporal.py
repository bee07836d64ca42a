"""Temporal sharing: the reference buffers of one camera stream and when to throw them away (keyframes).

Per encoder block the cache holds, for the base task and for the stacked sub-tasks, the input each token had
when it was last computed (``inp``), the block output it produced then (``out``) and its QKV row (``qkv``, the
keys and values other tokens' queries attend to). Between keyframes the engine recomputes a token only where
its input moved away from ``inp`` by more than the threshold (relative norm; at most ``max_token_fraction`` of
the tokens, largest changes first); only recomputed tokens update their references. A token that is not
recomputed takes ``x + (out - inp)``: its current input, exactly carried by the residual connection, plus the
block's update as computed when it was last recomputed. Its error is the change of that update over an input
change below the threshold: bounded by the threshold, and not accumulated frame after frame, since the
reference only moves when the token is recomputed.

The base task runs this way in every block. A sub-task's token that has not moved beyond the threshold keeps
its own cached update the same way; a token that moved is computed as per-frame task sharing computes it: with
its own weights ``W_base + dW`` where it differs from the base task beyond the sharing threshold, else with the
base task's current update, keys and values. (Recomputing every moved sub-task token with its own weights
measured worse on the shipped sub-tasks, whose heads were trained on features that follow the base's wherever
task sharing reuses them: on a slow pan, depth abs-rel 4-6% worse than per-frame inference, against 0-1.5% this
way, at the same settings.)

What is exact and what is approximate, per block between keyframes:

* Recomputed tokens: their rows (LayerNorm, QKV, projection, MLP) are exact given the block input; their
  queries attend to all N keys, where the keys and values of the other tokens are the cached ones (computed
  from those tokens' reference inputs).
* Tokens not recomputed keep an attention output computed against the keys of an older frame (and their own
  older input), as stated above.
* With threshold 0 and ``max_token_fraction`` 1 every token moves every frame: the base task is per-frame
  inference exactly, and each sub-task is computed as per-frame task sharing computes it (tested).

A keyframe runs the frame as per-frame inference (the base task in full, the sub-tasks sharing with it) and
refills every buffer. Keyframes come every ``keyframe_interval`` frames; when the stream's signature changes
(resolution, tasks, device or precision); after ``reset`` (a camera restart, a stamp jump); on a scene cut
(more than ``scene_cut_fraction`` of the tokens entering the first block changed beyond the threshold: the
frame is processed in full); when the measured drift (the mean relative change of the tokens that reuse their
references, over tokens and blocks, of the frame before) exceeds ``max_drift``; when the tokens entering the
view after a motion realignment (``motion.py``) exceed the token cap;
and when the tokens that changed beyond the threshold but were left out by the
token cap add up, since the last keyframe, to more than ``max_deferred`` of the tokens (their error is no
longer bounded by the threshold).

The heads follow the changed tokens too (``partial_heads``, on by default): between keyframes each head runs
on crops around the tokens whose features changed and reuses its previous output elsewhere
(``partial_heads.py`` says what is exact there).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from mtshare_ros.sharing.motion import MotionState, entering, shift_grid
from mtshare_ros.sharing.partial_heads import FULL_AREA, HeadCache


@dataclass(frozen=True)
class TemporalSettings:
    """How the engine reuses the previous frames of a stream. ``threshold`` is a relative change of a token's
    block input; ``max_token_fraction`` caps the tokens recomputed per block and frame; ``partial_heads`` runs the
    heads between keyframes only around the tokens that changed (``partial_heads.py``), else in full."""

    enabled: bool = False
    threshold: float = 0.2
    max_token_fraction: float = 0.3
    keyframe_interval: int = 30
    scene_cut_fraction: float = 0.8
    max_deferred: float = 0.5
    motion: str = "image"
    max_drift: float = 0.1
    partial_heads: bool = True
    partial_heads_area: float = FULL_AREA  # crops covering more of the token map: the full head instead
    # reuse head outputs moved with a motion realignment (exact on whole-token shifts of a static scene); off: a
    # realigned frame runs the full heads (the safe choice; the moved outputs skip one frame's drift test)
    partial_heads_shift: bool = False
    # relative change of a token's features (all feature layers) since its cached head output that recomputes it
    partial_heads_threshold: float = 0.05

    def __post_init__(self) -> None:
        if self.motion not in MOTIONS:
            raise ValueError(f"temporal motion must be one of {MOTIONS}, got {self.motion!r}")


MOTIONS = ("image", "off")
"""Motion compensation: realign the references by the image motion (estimated from the images, ``motion.py``,
unless the caller passes the frame's motion to the engine, e.g. from the camera's pose), or not at all."""


KEYFRAME_REASONS = ("start", "signature", "interval", "deferred", "drift", "entering", "scene_cut", "out_of_view")
"""Why a frame was a keyframe, in the order ``TemporalCache.is_keyframe`` tests them (the module docstring has each
rule); ``out_of_view`` is the engine's, after a motion that leaves no reference in view."""


def format_reasons(counts: dict[str, int]) -> str:
    """Keyframe counts by reason as one line, most frequent first (``scene_cut=12 interval=3``): /diagnostics and
    the replay report show it; ``parse_reasons`` reads it back."""
    return " ".join(f"{r}={n}" for r, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


def parse_reasons(text: str) -> dict[str, int]:
    """``format_reasons``' line back as counts (malformed parts skipped: it comes from another process)."""
    out = {}
    for part in text.split():
        name, _, n = part.partition("=")
        if name in KEYFRAME_REASONS and n.isdigit():
            out[name] = int(n)
    return out


@dataclass
class LayerCache:
    """One block's references for S stacked streams: ``inp``/``out`` (S, B, N, C), ``qkv`` (S * B, N, 3C); for
    the base task also the per-token norms of its QKV and first-MLP activations ((B, N) each), which the
    sub-tasks' token scores divide by."""

    inp: torch.Tensor
    out: torch.Tensor
    qkv: torch.Tensor
    names: tuple[str, ...] = ()
    norms: tuple[torch.Tensor, torch.Tensor] | None = None

    def nbytes(self) -> int:
        tensors = [self.inp, self.out, self.qkv, *(self.norms or ())]
        return sum(t.numel() * t.element_size() for t in tensors)

    def shift(self, grid: tuple[int, int], shift: tuple[int, int], pos: torch.Tensor) -> None:
        """Move every token's references by ``shift`` tokens on ``grid`` (``motion.py``), the inputs and outputs
        corrected by the position-embedding difference (``pos``: the streams' tables, (S, 1, N, C))."""
        dpos = (pos - shift_grid(pos, grid, shift)).to(self.inp.dtype)
        self.inp = shift_grid(self.inp, grid, shift) + dpos
        self.out = shift_grid(self.out, grid, shift) + dpos
        self.qkv = shift_grid(self.qkv, grid, shift)
        if self.norms is not None:
            self.norms = tuple(shift_grid(t.unsqueeze(-1), grid, shift).squeeze(-1) for t in self.norms)


class TemporalCache:
    """The reference buffers of one camera stream (see the module docstring). Not thread-safe: one stream, one
    worker. Its memory is fixed by the model and the frame size (``nbytes``), whatever the stream's length."""

    def __init__(self) -> None:
        self.base: list[LayerCache] = []
        self.sub: list[LayerCache | None] = []
        self.signature: tuple | None = None
        self.frames_since_keyframe = 0
        self.deferred = 0.0
        self.frames = 0
        self.keyframes = 0
        self.drift = 0.0  # the last frame's drift estimate (mean relative change of the reused tokens)
        self.motion = MotionState()
        self.stale: torch.Tensor | None = None  # (N,) tokens without a reference after a realignment
        self.heads = HeadCache()  # the heads' last outputs and statistics (partial heads)
        self.keyframe_reason = ""  # why the last keyframe was one (is_keyframe)
        self.keyframe_reasons: dict[str, int] = {}  # keyframes of this stream by reason
        self._force = True

    def reset(self) -> None:
        """Forget the stream: the next frame is a keyframe, and the buffers are released now."""
        self.base, self.sub = [], []
        self.signature = None
        self._force = True
        self.deferred = 0.0
        self.drift = 0.0
        self.stale = None
        self.heads.clear()
        self.motion.restart(None)

    def nbytes(self) -> int:
        return (sum(c.nbytes() for c in self.base) + sum(c.nbytes() for c in self.sub if c is not None)
                + self.heads.nbytes())

    def realign(self, grid: tuple[int, int], shift: tuple[int, int], pos_base: torch.Tensor,
                pos_sub: list[torch.Tensor | None], keep_heads: bool = False) -> None:
        """Move every block's references by ``shift`` tokens (``motion.py``); the positions without a source
        become ``stale`` (recomputed in every block of this frame). ``pos_base`` (1, N, C) and per block the
        stacked sub-tasks' position tables (S, 1, N, C) (None where the block has no sub-task cache). ``keep_heads``:
        move the cached head outputs too (``partial_heads_shift``), else drop them (the next heads run in full)."""
        for ref in self.base:
            ref.shift(grid, shift, pos_base[None])
        for ref, pos in zip(self.sub, pos_sub, strict=True):
            if ref is not None:
                ref.shift(grid, shift, pos)
        if keep_heads:
            self.heads.shift(grid, shift)
        else:
            self.heads.clear()
        new = entering(grid, shift, pos_base.device)
        self.stale = new if self.stale is None else self.stale | new

    def is_keyframe(self, signature: tuple, settings: TemporalSettings, first_change: torch.Tensor | None,
                    budget: int | None = None) -> bool:
        """Whether this frame must be a keyframe. ``first_change``: the relative change of the tokens entering the
        first block (B, N) against their references, for the scene-cut test (one host read on CUDA); ``budget``:
        the token cap, which the stale tokens of a realignment must fit in. Why, when it is one:
        ``keyframe_reason`` (counted in ``keyframe_reasons``)."""
        reason = self._keyframe_reason(signature, settings, first_change, budget)
        if reason:
            self.note_keyframe(reason)
        return bool(reason)

    def note_keyframe(self, reason: str) -> None:
        """Count a keyframe decided by ``reason`` (the engine's own: 'out_of_view' after a motion that leaves no
        reference in view)."""
        if reason not in KEYFRAME_REASONS:
            raise ValueError(f"unknown keyframe reason {reason!r}: one of {KEYFRAME_REASONS}")
        self.keyframe_reason = reason
        self.keyframe_reasons[reason] = self.keyframe_reasons.get(reason, 0) + 1

    def _keyframe_reason(self, signature: tuple, settings: TemporalSettings, first_change: torch.Tensor | None,
                         budget: int | None) -> str:
        if self._force or not self.base:
            return "start"
        if signature != self.signature:
            return "signature"
        if self.frames_since_keyframe + 1 >= settings.keyframe_interval:
            return "interval"
        if self.deferred > settings.max_deferred:
            return "deferred"
        if self.drift > settings.max_drift:
            return "drift"
        if self.stale is not None and budget is not None and int(self.stale.sum()) > budget:
            return "entering"
        if first_change is not None and settings.threshold > 0:
            changed = float((first_change > settings.threshold).float().mean())
            if changed > settings.scene_cut_fraction:
                return "scene_cut"
        return ""

    def begin(self, signature: tuple, keyframe: bool) -> None:
        """Book-keeping of a frame: a keyframe starts the buffers over (the engine refills them)."""
        self.frames += 1
        if keyframe:
            self.keyframes += 1
            self.base, self.sub = [], []
            self.signature = signature
            self.frames_since_keyframe = 0
            self.deferred = 0.0
            self.drift = 0.0
            self.stale = None
            self.heads.clear()
            self._force = False
        else:
            self.frames_since_keyframe += 1

    def add_deferred(self, fraction: float) -> None:
        """Tokens that changed beyond the threshold but were left out by the cap, as a fraction of N x blocks."""
        self.deferred += fraction
