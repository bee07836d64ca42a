"""The image motion of a camera stream between two frames, and the realignment of per-token buffers by it.

Temporal sharing compares each token with the reference it had when it was last computed. When the camera pans
by a few pixels every 16-pixel patch changes although the scene did not; realigning the references by the image
motion makes a token whose content only moved meet its moved reference.

Estimation (``estimate_shift``): phase correlation of two grey frames downscaled by ``DOWNSCALE`` (a Hann
window against the border's discontinuity, the normalised cross-power spectrum, its inverse-FFT peak with a
parabolic sub-pixel fit). It measures a global image translation; rotation about the optical axis, zoom (a
forward walk) and parallax are not modelled: they are left to the token threshold, which recomputes the
tokens they change. Measured at 1-2 ms per 320x240 frame on one loaded CPU core (5 ms with a realignment);
a homography from sparse flow or DIS dense flow has not been compared yet. It runs in torch on the frame's
device: no host round trip of the image, one read of the peak.

Realignment: the reference buffers are shifted by a whole number of tokens (``realign``), the accumulated
motion rounded to the patch grid; the remainder (at most half a patch) stays in the accumulator, so the
buffers follow the scene over many frames. The frame itself is moved by that remainder, rounded to whole pixels
(``translate``), before it is embedded, and its outputs are moved back after the heads: every frame between
keyframes is then laid on the keyframe's pixel grid, moved by whole tokens, so a token whose content only moved
meets a reference of the same content to half a pixel, whether its reference was refreshed since the keyframe
or not (without the pixel move, a hand-held camera's 1-3 pixels a frame change every patch long before they add
up to a token). What is exact and what is approximate:

* The shift of a token's stored input, output and QKV rows is exact bookkeeping: each moves with its content.
* The stored inputs and outputs of every block are corrected by the position-embedding difference of their
  new and old grid positions. The residual stream carries the embedding additively, so a token reused in every
  block since its reference has exactly the corrected values: on an integer-patch shift of a static scene, the
  moved tokens meet their references exactly in every block and only the entering border is recomputed.
* The stored QKV rows (the keys and values other tokens attend to) and the stored updates ``out - inp`` keep
  the position they were computed at: approximate, as is any reused token's attention output (see
  ``temporal.py``). Sub-patch motion, rotation, zoom and parallax leave a residual the threshold judges.
* Tokens whose grid position had no source (entering the view) hold no reference: they are recomputed in every
  block of the frame (``stale``); when they exceed the token cap the frame is a keyframe.
* The pixel move is a copy of whole pixels, the edge pixels repeated where the move uncovers the frame; moving
  the outputs back is exact except at the band of (at most half a patch of) pixels at the edge the content
  entered from, whose outputs repeat the nearest computed ones. Keyframes run the frame as it came.
* The heads run on the moved frame's tokens at their current positions, before the outputs are moved back.

Motion may also come from the outside: the engine's ``shift`` argument replaces the image estimate for that
frame, in the same units and sign (pixels of the engine's input, the content's motion). The node gives it from
the camera's pose in a fixed frame (``temporal.motion_frame``): ``runtime/tf_motion.py`` projects the camera's
motion between the two frames' stamps through the camera matrix.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

DOWNSCALE = 4
"""Image pixels per pixel of the grey frame motion is estimated on (80x60 for a 320x240 frame)."""

MIN_RESPONSE = 0.05
"""Phase-correlation peaks below this (of the ideal 1) are no motion estimate: the shift is taken as zero."""


def grey(x: torch.Tensor, factor: int = DOWNSCALE) -> torch.Tensor:
    """A batch of images (B, C, H, W) as one downscaled grey frame (h, w), float32 (frames of a batch are one
    stream's: averaged)."""
    g = x.float().mean(dim=(0, 1), keepdim=True)
    return F.avg_pool2d(g, factor, ceil_mode=True)[0, 0] if factor > 1 else g[0, 0]


def _hann(h: int, w: int, device) -> torch.Tensor:
    return torch.outer(torch.hann_window(h, periodic=False, device=device),
                       torch.hann_window(w, periodic=False, device=device))


def phase_correlation(prev: torch.Tensor, cur: torch.Tensor) -> tuple[float, float, float]:
    """Translation ``(dy, dx)`` in pixels of these grey frames with ``cur(p) ~ prev(p - d)`` (content moved by
    ``+d``), and the correlation peak (0..1: how well one translation explains the frames)."""
    h, w = cur.shape
    win = _hann(h, w, cur.device)
    a = torch.fft.rfft2((prev - prev.mean()) * win)
    b = torch.fft.rfft2((cur - cur.mean()) * win)
    cross = b * a.conj()
    r = torch.fft.irfft2(cross / (cross.abs() + 1e-9), s=(h, w))
    peak = int(r.argmax())
    py, px = divmod(peak, w)
    vals = r.cpu()  # one read: the peak and its neighbours for the sub-pixel fit

    def sub(c: float, m: float, p: float) -> float:
        den = m - 2 * c + p
        return 0.0 if abs(float(den)) < 1e-12 else float(0.5 * (m - p) / den)

    c = vals[py, px]
    dy = py + sub(c, vals[(py - 1) % h, px], vals[(py + 1) % h, px])
    dx = px + sub(c, vals[py, (px - 1) % w], vals[py, (px + 1) % w])
    dy = dy - h if dy > h / 2 else dy
    dx = dx - w if dx > w / 2 else dx
    return dy, dx, float(c)


def estimate_shift(prev: torch.Tensor, cur: torch.Tensor, factor: int = DOWNSCALE) -> tuple[float, float, float]:
    """Image motion (dy, dx) in full-resolution pixels between two grey frames of ``grey(.., factor)``, and the
    correlation peak; (0, 0) when the peak is too weak to be a translation (``MIN_RESPONSE``)."""
    dy, dx, resp = phase_correlation(prev, cur)
    if resp < MIN_RESPONSE:
        return 0.0, 0.0, resp
    return dy * factor, dx * factor, resp


@dataclass
class MotionState:
    """A stream's motion since its keyframe: the last grey frame, the accumulated motion (pixels) and the whole
    tokens the buffers were shifted by; the last estimate and its time, for diagnostics."""

    prev: torch.Tensor | None = None
    total: tuple[float, float] = (0.0, 0.0)
    applied: tuple[int, int] = (0, 0)
    last: tuple[float, float] = (0.0, 0.0)
    last_response: float = 1.0
    last_ms: float = 0.0
    source: str = "off"
    history: list[float] = field(default_factory=list)

    def restart(self, frame: torch.Tensor | None) -> None:
        """A keyframe: the buffers are where the frame is; motion counts from here."""
        self.prev, self.total, self.applied = frame, (0.0, 0.0), (0, 0)

    def pixels(self, patch: int) -> tuple[int, int]:
        """The whole pixels the current frame is moved by, back onto the buffers' grid: the accumulated motion
        left after the whole tokens applied (rounded; at most half a patch)."""
        return (round(self.total[0] - self.applied[0] * patch), round(self.total[1] - self.applied[1] * patch))

    def advance(self, shift: tuple[float, float], patch: int) -> tuple[int, int]:
        """Add this frame's motion; return the whole tokens (sy, sx) the buffers must move now."""
        self.last = shift
        self.total = (self.total[0] + shift[0], self.total[1] + shift[1])
        want = (round(self.total[0] / patch), round(self.total[1] / patch))
        step = (want[0] - self.applied[0], want[1] - self.applied[1])
        self.applied = want
        return step


def translate(t: torch.Tensor, pixels: tuple[int, int]) -> torch.Tensor:
    """Maps (..., H, W) moved by whole ``pixels`` (dy, dx): ``new[p] = old[p - d]``, edge pixels repeated where
    nothing moves in."""
    dy, dx = int(pixels[0]), int(pixels[1])
    if not (dy or dx):
        return t
    h, w = t.shape[-2:]
    if abs(dy) >= h or abs(dx) >= w:
        raise ValueError(f"a move of {pixels} pixels leaves nothing of a {h}x{w} map")
    kept = t[..., max(0, -dy): h - max(0, dy), max(0, -dx): w - max(0, dx)]
    pad = (max(0, dx), max(0, -dx), max(0, dy), max(0, -dy))
    if kept.ndim == 4:  # as it is (a head's channels-last output stays so, without a copy to reorder it)
        return F.pad(kept, pad, mode="replicate")
    flat = kept.reshape(-1, 1, *kept.shape[-2:])  # replicate padding wants (N, C, H, W)
    return F.pad(flat, pad, mode="replicate").reshape(*kept.shape[:-2], h, w)


def shift_grid(t: torch.Tensor, grid: tuple[int, int], shift: tuple[int, int]) -> torch.Tensor:
    """Rows of ``t`` (..., N, C) laid on ``grid`` moved by ``shift`` tokens: ``new[i] = old[i - shift]`` (rows
    without a source wrap around: the caller marks them stale)."""
    gh, gw = grid
    lead = t.shape[:-2]
    g = t.reshape(*lead, gh, gw, t.shape[-1])
    g = torch.roll(g, shifts=shift, dims=(-3, -2))
    return g.reshape(*lead, gh * gw, t.shape[-1])


def entering(grid: tuple[int, int], shift: tuple[int, int], device) -> torch.Tensor:
    """(N,) bool: the grid positions with no source after ``shift_grid`` (content entering the view)."""
    gh, gw = grid
    sy, sx = shift
    ys = torch.arange(gh, device=device).unsqueeze(1) - sy
    xs = torch.arange(gw, device=device).unsqueeze(0) - sx
    return ((ys < 0) | (ys >= gh) | (xs < 0) | (xs >= gw)).reshape(-1)


def shift_too_large(grid: tuple[int, int], shift: tuple[int, int]) -> bool:
    return abs(shift[0]) >= grid[0] or abs(shift[1]) >= grid[1]


def magnitude(shift: tuple[float, float]) -> float:
    return math.hypot(*shift)
