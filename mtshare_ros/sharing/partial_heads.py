"""Dense heads between keyframes: run only where the head's input changed, reuse the previous output elsewhere.

Between keyframes of temporal sharing most tokens reuse their references, yet a full head costs as much as on a
keyframe (about half of such a frame's time). Here each head (or group of heads run together) runs on crops of
the token map around the tokens whose features changed, and pastes them into its cached full-resolution output.

Which tokens changed: those the encoder recomputed (or, for a sub-task, whose reference moved) in any block up to
the last feature layer, per task (``changed`` from the engine; the tokens entering the view after a motion
realignment are among them), and those whose features moved by more than ``partial_heads_threshold`` (0.05,
relative, all feature layers together) away from the features the cached output was computed from. The second
set bounds the staleness of a reused output: a token below the threshold in every block still follows its
current input in the encoder (``x + (out - inp)``); its reused head output would not.

Where the output depends on them (``RADIUS``): through the head (1x1 fuse at 1/16; bilinear x2; 3x3 conv; bilinear
x2; 3x3 conv; 1x1; bilinear x4, ``models/vit.py``) a token reaches output pixels up to 26 px beyond its own 16, and
an output pixel reads tokens up to 26 px away: ``RADIUS = 2`` tokens each way (tested). A changed token's output
is recomputed within ``RADIUS`` tokens of it (the paste box), from a crop ``RADIUS`` tokens larger (the margin).
Crops are whole tokens, so every resolution of the head is aligned with the full map's (bilinear with factors of
two and four samples the same positions; a crop edge on the image edge pads and clamps as the full map does).

What is exact and what is approximate:

* GroupNorm normalises over the whole map: a crop cannot see the map's statistics. They are recorded per head,
  stage and frame whenever the head runs on the full map (keyframes, and frames where the full head is cheaper)
  and reused on crops (``NormStats``). With the statistics of the last full run, a crop's pasted pixels equal
  the full head's exactly (float rounding: the affine form of the norm); against the full head with current
  statistics they differ by the statistics' change since then (measured in ``test/test_partial_heads.py`` and
  ``bench/temporal.py``: the variant "task + temporal, full heads" sits beside this one). This is the one
  approximation that measured: on a fast turn the statistics move with the view, and the outputs of the frames
  after a full run fall up to 6.8% (mean relative depth) behind the full heads until the next full run.
* Pixels outside the paste boxes keep the output of the frame they were last computed in (until their features
  drift beyond the threshold). After a whole-token
  realignment of the references (``motion.py``) the outputs move with them only with ``partial_heads_shift``
  (exact on an integer-patch shift of a static scene; otherwise the head's dependence on the position embedding
  is not re-evaluated for them, and the feature-drift test is skipped on that frame, the moved features carrying
  another position embedding); by default a realigned frame drops the cached outputs and runs the full heads.
* A frame with nothing changed runs no head and returns the cached outputs (the same tensors as the frame before:
  outputs are not modified in place by anyone downstream; a frame that pastes writes a new tensor).
* Where the crops add up to more than ``FULL_AREA`` of the map the head runs in full (with live statistics, which
  it records): the measured break-even of crops against the full head, whose convolutions run more efficiently
  on one large map than on several small ones.

Head multiply-adds scale with the area computed: every layer's output is a fixed multiple of the token area
(``cost.head_macs``), so the executed count of a crop run is the full count times its share of the tokens.

On CUDA with ``sync_free`` the engine keeps the full heads (planning crops reads the changed tokens back to the
host, and a GPU runs the full heads in little time).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from mtshare_ros.models.vit import NormFn
from mtshare_ros.sharing.tokens import delta_score

RADIUS = 2
"""Tokens each way a head's output depends on (26 px of 16: see the module docstring)."""

FULL_AREA = 0.7
"""Crops covering more than this share of the token map: the full head instead (measured break-even)."""

MERGE_SLACK = 8
"""Token area one more crop run costs in fixed overhead (its operators' launches), when deciding to merge two."""

Box = tuple[int, int, int, int]
"""A token rectangle (y0, y1, x0, x1), ends excluded."""


class NormStats:
    """One head run's GroupNorm statistics per stage (mean and 1/std per frame and group, float32): recorded on a
    full map (``record``), applied to crops (``frozen``); both are ``models.vit.NormFn``."""

    def __init__(self) -> None:
        self.stages: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}

    def record(self, stage: int, x: torch.Tensor, groups: int, weight: torch.Tensor, bias: torch.Tensor,
               eps: float) -> torch.Tensor:
        """Plain GroupNorm on the full map, keeping its statistics: the kernel behind ``F.group_norm`` returns them
        (same output, no second pass over the map)."""
        b, c = x.shape[:2]
        y, mean, rstd = torch.native_group_norm(x, weight, bias, b, c, x[0, 0].numel(), groups, eps)
        self.stages[stage] = (mean.float(), rstd.float())
        return y

    def frozen(self, stage: int, x: torch.Tensor, groups: int, weight: torch.Tensor, bias: torch.Tensor,
               eps: float) -> torch.Tensor:
        """GroupNorm of a crop with the full map's recorded statistics: one per-channel affine map."""
        mean, rstd = self.stages[stage]
        per = x.shape[1] // groups
        scale = rstd.repeat_interleave(per, 1) * weight.float()
        shift = bias.float() - mean.repeat_interleave(per, 1) * scale
        return x * scale[..., None, None].to(x.dtype) + shift[..., None, None].to(x.dtype)

    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for pair in self.stages.values() for t in pair)


HeadFn = Callable[[list[list[torch.Tensor]], tuple[int, int], torch.Tensor, NormFn | None], list[torch.Tensor]]
"""A head group's forward: (per task its features, grid, image, norm) -> per task its output."""


@dataclass(frozen=True)
class HeadGroup:
    """Heads that run as one network (the base task's head alone; the sub-tasks' grouped heads, ``heads.py``; or one
    sub-task's head) and share one crop plan."""

    key: str
    tasks: tuple[str, ...]
    forward: HeadFn


@dataclass
class HeadCache:
    """A stream's last head outputs (full resolution, per task) and the GroupNorm statistics of each group's last
    full run; emptied on keyframes (``TemporalCache``)."""

    outputs: dict[str, torch.Tensor] = field(default_factory=dict)
    stats: dict[str, NormStats] = field(default_factory=dict)
    feats: dict[str, torch.Tensor] = field(default_factory=dict)  # per task (B, N, sum C): what the outputs read
    moved: bool = False  # the outputs were moved with the references this frame (``shift``)

    def clear(self) -> None:
        self.outputs, self.stats, self.feats, self.moved = {}, {}, {}, False

    def nbytes(self) -> int:
        return (sum(t.numel() * t.element_size() for t in [*self.outputs.values(), *self.feats.values()])
                + sum(s.nbytes() for s in self.stats.values()))

    def shift(self, grid: tuple[int, int], shift: tuple[int, int]) -> None:
        """Move the outputs by ``shift`` whole tokens with the encoder's references (``motion.py``); what wraps
        round is the entering border, which the engine recomputes (its tokens are recomputed in every block)."""
        for t, out in self.outputs.items():
            p = out.shape[-2] // grid[0], out.shape[-1] // grid[1]
            self.outputs[t] = torch.roll(out, shifts=(shift[0] * p[0], shift[1] * p[1]), dims=(-2, -1))
        self.moved = True  # the moved tokens' features carry their new position embedding: not a content change


def _expand(box: Box, r: int, grid: tuple[int, int]) -> Box:
    y0, y1, x0, x1 = box
    return max(0, y0 - r), min(grid[0], y1 + r), max(0, x0 - r), min(grid[1], x1 + r)


def _area(box: Box) -> int:
    return (box[1] - box[0]) * (box[3] - box[2])


def _union(a: Box, b: Box) -> Box:
    return min(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), max(a[3], b[3])


def _components(mask: list[list[bool]]) -> list[Box]:
    """Bounding boxes of the 8-connected components of a small host mask."""
    gh, gw = len(mask), len(mask[0])
    seen = [[False] * gw for _ in range(gh)]
    boxes = []
    for y in range(gh):
        for x in range(gw):
            if not mask[y][x] or seen[y][x]:
                continue
            stack, box = [(y, x)], [y, y + 1, x, x + 1]
            seen[y][x] = True
            while stack:
                cy, cx = stack.pop()
                box = [min(box[0], cy), max(box[1], cy + 1), min(box[2], cx), max(box[3], cx + 1)]
                for ny in range(max(0, cy - 1), min(gh, cy + 2)):
                    for nx in range(max(0, cx - 1), min(gw, cx + 2)):
                        if mask[ny][nx] and not seen[ny][nx]:
                            seen[ny][nx] = True
                            stack.append((ny, nx))
            boxes.append(tuple(box))
    return boxes


def plan(changed: torch.Tensor, grid: tuple[int, int], full_area: float = FULL_AREA) -> list[Box] | None:
    """The paste boxes for ``changed`` tokens ((B, N) or (N,) bool; a batch is one stream: their union): each
    changed token's ``RADIUS`` neighbourhood, as bounding boxes of its connected parts, merged where one crop costs
    less than two. [] when nothing changed; None when the crops (paste box plus margin) would cover more than
    ``full_area`` of the map (the full head is cheaper). One host read of the mask."""
    m = changed.reshape(-1, *grid).any(0)
    near = F.max_pool2d(m[None, None].float(), 2 * RADIUS + 1, stride=1, padding=RADIUS)[0, 0] > 0
    count = int(near.sum())  # the one host read when too much changed: no crop can cover less than this
    if count == 0:
        return []
    if count > full_area * grid[0] * grid[1]:
        return None
    boxes = _components(near.cpu().tolist())

    def cost(b: Box) -> int:
        return _area(_expand(b, RADIUS, grid)) + MERGE_SLACK

    merged = True
    while merged and len(boxes) > 1:
        merged = False
        for i in range(len(boxes)):
            for j in range(i + 1, len(boxes)):
                u = _union(boxes[i], boxes[j])
                if cost(u) <= cost(boxes[i]) + cost(boxes[j]):
                    boxes[i] = u
                    del boxes[j]
                    merged = True
                    break
            if merged:
                break
    if sum(_area(_expand(b, RADIUS, grid)) for b in boxes) > full_area * grid[0] * grid[1]:
        return None
    return boxes


def _crop_tokens(f: torch.Tensor, grid: tuple[int, int], box: Box) -> torch.Tensor:
    y0, y1, x0, x1 = box
    return f.reshape(f.shape[0], *grid, f.shape[-1])[:, y0:y1, x0:x1].reshape(f.shape[0], -1, f.shape[-1])


def run_heads(groups: list[HeadGroup], feats: dict[str, list[torch.Tensor]], grid: tuple[int, int],
              image: torch.Tensor, cache: HeadCache, changed: dict[str, torch.Tensor] | None,
              full_area: float = FULL_AREA, threshold: float = 0.0) -> tuple[dict[str, torch.Tensor], dict[str, int]]:
    """Every group's outputs, and per task the tokens its head computed (the map's N when it ran in full).
    ``changed`` None (a keyframe): every head in full, recording its statistics; else per task the tokens (B, N)
    the encoder changed, to which the tokens whose features moved beyond ``threshold`` since the cached output
    are added (see the module docstring)."""
    n = grid[0] * grid[1]
    p = image.shape[-2] // grid[0], image.shape[-1] // grid[1]
    outputs: dict[str, torch.Tensor] = {}
    computed: dict[str, int] = {}
    for g in groups:
        args = [feats[t] for t in g.tasks]
        flat = {t: torch.cat(feats[t], -1) for t in g.tasks}
        have = g.key in cache.stats and all(t in cache.outputs and t in cache.feats for t in g.tasks)
        boxes = None
        if changed is not None and have:
            mask = None
            for t in g.tasks:
                drift = changed[t] if cache.moved else changed[t] | (delta_score(flat[t], cache.feats[t]) > threshold)
                mask = drift if mask is None else mask | drift
            boxes = plan(mask, grid, full_area)
        if boxes is None:  # a keyframe, no cache yet, or too much changed: the full map, recording its statistics
            stats = NormStats()
            outs = g.forward(args, grid, image, stats.record)
            cache.stats[g.key] = stats
            cache.feats.update(flat)
            area = n
        else:
            outs = [cache.outputs[t] for t in g.tasks]
            area = 0
            if boxes:
                outs = [o.clone() for o in outs]  # a new tensor: the previous frame's output stays as it was
            for box in boxes:
                crop = _expand(box, RADIUS, grid)
                cy0, cy1, cx0, cx1 = crop
                sub = g.forward([[_crop_tokens(f, grid, crop) for f in fl] for fl in args], (cy1 - cy0, cx1 - cx0),
                                image[..., cy0 * p[0]:cy1 * p[0], cx0 * p[1]:cx1 * p[1]], cache.stats[g.key].frozen)
                y0, y1, x0, x1 = box
                for o, s in zip(outs, sub, strict=True):
                    o[..., y0 * p[0]:y1 * p[0], x0 * p[1]:x1 * p[1]] = \
                        s[..., (y0 - cy0) * p[0]:(y1 - cy0) * p[0], (x0 - cx0) * p[1]:(x1 - cx0) * p[1]]
                area += _area(crop)
                for t in () if cache.moved else g.tasks:  # the pasted tokens' outputs read the current features
                    ref = cache.feats[t].view(-1, *grid, flat[t].shape[-1])
                    ref[:, y0:y1, x0:x1] = flat[t].view(-1, *grid, flat[t].shape[-1])[:, y0:y1, x0:x1]
        if cache.moved:  # the moved outputs stand for this frame's features from now on
            cache.feats.update(flat)
        for t, o in zip(g.tasks, outs, strict=True):
            outputs[t] = o
            cache.outputs[t] = o
            computed[t] = area
    cache.moved = False
    return outputs, computed
