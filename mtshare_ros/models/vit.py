"""Dense-prediction vision transformer: a ViT encoder of timm blocks with a light multi-level head.

One ``DenseViT`` solves one task. The encoder is plain ViT (patch embedding, learned absolute
positional embedding, pre-norm blocks) so that timm checkpoints map onto it and the task-sharing
engine can walk its blocks layer by layer. The head takes the tokens of a few encoder layers,
fuses them at 1/16 resolution and upsamples with two small conv stages to 1/4, then bilinearly to the
input size: most of the cost stays in the encoder, where sharing can save it. A tiny convolutional
detail branch reads the image itself at 1/4 resolution and joins the last stage: 16x16 tokens cannot
place a boundary or a shading gradient to the pixel, two small convolutions can.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
from timm.layers import PatchEmbed, resample_abs_pos_embed
from timm.models.vision_transformer import Block
from torch import nn

from mtshare_ros.tasks import task_spec

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass
class ModelConfig:
    """Architecture of one single-task model; stored in every checkpoint."""

    img_size: tuple[int, int] = (240, 320)
    patch_size: int = 16
    embed_dim: int = 192
    depth: int = 6
    num_heads: int = 3
    mlp_ratio: float = 4.0
    feature_layers: tuple[int, ...] = (1, 3, 5)
    head_channels: int = 96
    detail_channels: int = 16
    num_classes: int = 15
    extra: dict = field(default_factory=dict)
    # pixels at img_size's width: depth is predicted for a camera of this focal length (models/focal.py);
    # None: metric depth directly, whatever the camera (checkpoints from before the scheme)
    canonical_focal: float | None = None

    def to_dict(self) -> dict:
        d = asdict(self)
        if d["canonical_focal"] is None:  # older checkpoints and training states compare equal
            del d["canonical_focal"]
        d["img_size"] = list(self.img_size)
        d["feature_layers"] = list(self.feature_layers)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> ModelConfig:
        d = dict(d)
        d.setdefault("detail_channels", 0)  # checkpoints from before the detail branch have none
        d["img_size"] = tuple(d["img_size"])
        d["feature_layers"] = tuple(d["feature_layers"])
        return cls(**d)


def sincos_pos_embed(grid: tuple[int, int], dim: int, scale: float = 0.5) -> torch.Tensor:
    """2D sine-cosine positional embedding (1, gh * gw, dim), the initial value of the learned one.

    Dense geometry (depth, normals) depends strongly on where a pixel is in the frame; a smooth,
    distinct code per position from the start trains much faster from scratch than a random init.
    ``scale`` sets its standard deviation relative to a unit-variance patch embedding.
    """
    gy, gx = torch.meshgrid(torch.arange(grid[0], dtype=torch.float32), torch.arange(grid[1], dtype=torch.float32),
                            indexing="ij")
    q = dim // 4
    omega = 1.0 / 10000 ** (torch.arange(q, dtype=torch.float32) / q)
    parts = []
    for coord in (gy.reshape(-1, 1), gx.reshape(-1, 1)):
        parts += [torch.sin(coord * omega), torch.cos(coord * omega)]
    pe = torch.cat(parts, dim=1)
    pe = torch.cat([pe, torch.zeros(pe.shape[0], dim - pe.shape[1])], dim=1)  # dims not divisible by 4
    return (pe * (scale / pe.std())).unsqueeze(0)


class ViTEncoder(nn.Module):
    """Patch embedding + positional embedding + timm ``Block`` stack (no class token)."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.patch_embed = PatchEmbed(
            img_size=cfg.img_size,
            patch_size=cfg.patch_size,
            embed_dim=cfg.embed_dim,
            strict_img_size=False,
        )
        self.grid_size = self.patch_embed.grid_size
        self.pos_embed = nn.Parameter(sincos_pos_embed(self.grid_size, cfg.embed_dim))
        self.blocks = nn.ModuleList(
            Block(cfg.embed_dim, cfg.num_heads, mlp_ratio=cfg.mlp_ratio, qkv_bias=True) for _ in range(cfg.depth)
        )
        self.norm = nn.LayerNorm(cfg.embed_dim, eps=1e-6)

    def pos_embed_for(self, grid: tuple[int, int], offset: tuple[int, int] | None = None) -> torch.Tensor:
        """Positional embedding for a token grid, interpolated when it differs from the training grid.

        ``offset`` (in patches) says that the input is a patch-aligned crop of a full-size image: the
        crop then gets the slice of the full grid's embedding where it lies, so that training on crops
        (cheap) teaches the same positions that full frames use at inference.
        """
        if offset is not None:
            gh, gw = self.grid_size
            oy, ox = offset
            if oy < 0 or ox < 0 or oy + grid[0] > gh or ox + grid[1] > gw:
                raise ValueError(f"crop of {grid} patches at offset {offset} lies outside the {gh}x{gw} patch grid")
            full = self.pos_embed.reshape(1, gh, gw, -1)
            return full[:, oy : oy + grid[0], ox : ox + grid[1]].reshape(1, grid[0] * grid[1], -1)
        if tuple(grid) == tuple(self.grid_size):
            return self.pos_embed
        return resample_abs_pos_embed(self.pos_embed, list(grid), list(self.grid_size), num_prefix_tokens=0)

    def embed(
        self, x: torch.Tensor, offset: tuple[int, int] | None = None
    ) -> tuple[torch.Tensor, tuple[int, int]]:
        """Image (B, 3, H, W), H and W multiples of the patch size -> tokens (B, N, C) and grid."""
        p = self.cfg.patch_size
        if x.shape[-2] % p or x.shape[-1] % p:
            raise ValueError(f"input size {tuple(x.shape[-2:])} is not a multiple of the patch size {p}")
        grid = (x.shape[-2] // p, x.shape[-1] // p)
        return self.patch_embed(x) + self.pos_embed_for(grid, offset), grid

    def forward_intermediates(
        self, x: torch.Tensor, offset: tuple[int, int] | None = None, block: BlockFn | None = None,
        keep_inputs: bool = False, tokens: torch.Tensor | None = None,
    ) -> Intermediates:
        """The one walk through the encoder (in the spirit of timm's ``forward_intermediates``): embed, run every
        block, collect the outputs of ``cfg.feature_layers`` (the last one after the final norm) and, with
        ``keep_inputs``, every block's input. ``block(i, blk, tokens)`` says how block ``i`` runs (default: timm's
        ``blk(tokens)``): the shared engine's base path passes one that also keeps what its sub-tasks reuse, or
        that recomputes only the tokens that changed since the previous frame. ``tokens``: the embedding of ``x``
        when the caller made it already."""
        if tokens is None:
            tokens, grid = self.embed(x, offset)
        else:
            grid = (x.shape[-2] // self.cfg.patch_size, x.shape[-1] // self.cfg.patch_size)
        out = Intermediates([], tuple(grid), [] if keep_inputs else None)
        last = len(self.blocks) - 1
        for i, blk in enumerate(self.blocks):
            if out.inputs is not None:
                out.inputs.append(tokens)
            tokens = blk(tokens) if block is None else block(i, blk, tokens)
            if i in self.cfg.feature_layers:
                out.features.append(self.norm(tokens) if i == last else tokens)
        return out

    def forward(
        self, x: torch.Tensor, offset: tuple[int, int] | None = None
    ) -> tuple[list[torch.Tensor], tuple[int, int]]:
        """Returns the outputs of ``cfg.feature_layers`` (last one after the final norm) and the grid."""
        out = self.forward_intermediates(x, offset)
        return out.features, out.grid


BlockFn = Callable[[int, nn.Module, torch.Tensor], torch.Tensor]
"""How one encoder block runs: (index, block, its input tokens) -> its output tokens."""


@dataclass
class Intermediates:
    """One encoder walk: the feature layers' outputs (what the heads read), the token grid, and every block's input
    (``keep_inputs``: what temporal sharing compares between frames)."""

    features: list[torch.Tensor]
    grid: tuple[int, int]
    inputs: list[torch.Tensor] | None = None


def _group_norm(channels: int) -> nn.GroupNorm:
    """GroupNorm with 8 groups, or the largest count that divides ``channels`` (narrow sub-task heads)."""
    return nn.GroupNorm(math.gcd(8, channels), channels)


NormFn = Callable[[int, torch.Tensor, int, torch.Tensor, torch.Tensor, float], torch.Tensor]
"""How a head normalises its stage ``i`` (0: after ``up1``, 1: after ``up2``): ``norm(i, x, groups, weight, bias,
eps)``. The default (``group_norm``) is GroupNorm over the whole map; temporal sharing passes one that records the
statistics of a full map, or reuses them on a crop (``sharing/partial_heads.py``): a crop has no statistics of
the map it is part of."""


def group_norm(stage: int, x: torch.Tensor, groups: int, weight: torch.Tensor, bias: torch.Tensor,
               eps: float) -> torch.Tensor:
    """``NormFn`` of plain GroupNorm (statistics of ``x`` itself)."""
    return F.group_norm(x, groups, weight, bias, eps)


def token_map(feats: list[torch.Tensor], grid: tuple[int, int]) -> torch.Tensor:
    """Token features (B, N, C_i) concatenated as one channels-last (B, sum C_i, *grid) map: tokens are
    already pixel-major, so this is one concatenation and no transposition."""
    b = feats[0].shape[0]
    return torch.cat(feats, dim=-1).view(b, *grid, -1).permute(0, 3, 1, 2)


def final_layout(x: torch.Tensor) -> torch.Tensor:
    """The layout a head's raw output is upsampled to full size in: channels-last for many channels
    (segmentation logits: ~2x faster on CPU, 1.2 vs 2.5 ms for 15 x 240 x 320, and the per-pixel argmax after it
    reads one pixel's logits together), NCHW for the few channels of depth and normals, where it is faster."""
    return x.contiguous(memory_format=torch.channels_last) if x.shape[1] >= 8 else x.contiguous()


class DenseHead(nn.Module):
    """Fuses multi-level tokens and upsamples to a dense map; task-specific output activation.

    GroupNorm rather than BatchNorm: the output does not depend on the batch, so data-parallel training
    on N processes gives the same weights as one process with the same global batch. The detail branch's
    projection starts at zero, so a head without it (an older checkpoint) warm-starts one with it exactly.
    """

    def __init__(self, cfg: ModelConfig, task: str, out_channels: int) -> None:
        super().__init__()
        self.task = task
        c = cfg.head_channels
        self.fuse = nn.Conv2d(cfg.embed_dim * len(cfg.feature_layers), c, 1)
        self.up1 = nn.Sequential(nn.Conv2d(c, c // 2, 3, padding=1), _group_norm(c // 2), nn.GELU())
        self.up2 = nn.Sequential(nn.Conv2d(c // 2, c // 3, 3, padding=1), _group_norm(c // 3), nn.GELU())
        self.out = nn.Conv2d(c // 3, out_channels, 1)
        d = cfg.detail_channels
        self.detail: nn.Module | None = None
        if d:
            self.detail = nn.Sequential(
                nn.Conv2d(3, d, 4, stride=4),
                nn.GELU(),
                nn.Conv2d(d, d, 3, padding=1),
                nn.GELU(),
                nn.Conv2d(d, c // 2, 1),
            )
            nn.init.zeros_(self.detail[-1].weight)
            nn.init.zeros_(self.detail[-1].bias)

    def forward(self, feats: list[torch.Tensor], grid: tuple[int, int], image: torch.Tensor,
                norm: NormFn | None = None) -> torch.Tensor:
        """``image``: the model input (B, 3, H, W); sets the output size and feeds the detail branch. ``norm``:
        how the two GroupNorm stages normalise (``NormFn``; default: over the whole map, as the modules do)."""
        size = tuple(image.shape[-2:])
        # channels-last: the convolutions run ~15% faster on CPU (no layout reorders around oneDNN)
        x = self.fuse(token_map(feats, grid))
        x = self._stage(self.up1, 0, F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False), norm)
        x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
        if self.detail is not None:
            x = x + self.detail(image.contiguous(memory_format=torch.channels_last))
        x = final_layout(self.out(self._stage(self.up2, 1, x, norm)))
        return self.activate(self.task, F.interpolate(x, size=size, mode="bilinear", align_corners=False))

    @staticmethod
    def _stage(stage: nn.Sequential, i: int, x: torch.Tensor, norm: NormFn | None) -> torch.Tensor:
        """Convolution, GroupNorm (its module, or ``norm`` with the module's parameters), GELU."""
        if norm is None:
            return stage(x)
        conv, gn, act = stage
        return act(norm(i, conv(x), gn.num_groups, gn.weight, gn.bias, gn.eps))

    @staticmethod
    def activate(task: str, x: torch.Tensor) -> torch.Tensor:
        """The task's output activation on the upsampled raw output (``TaskSpec.activate``)."""
        return task_spec(task).activate(x)


class DenseViT(nn.Module):
    """One task's model: ``forward(image)`` -> dense prediction at the image size.

    Outputs: the task's ``TaskSpec`` says (segmentation logits (B, K, H, W); depth in metres (B, 1, H, W); unit
    normals in the camera optical frame (B, 3, H, W)). Inputs are ImageNet-normalised RGB.
    """

    def __init__(self, cfg: ModelConfig, task: str, encoder: ViTEncoder | None = None) -> None:
        """``encoder``: an existing encoder to use (and share) instead of a new one (multi-task models)."""
        super().__init__()
        spec = task_spec(task)  # an unknown task is refused here, with the known ones
        if encoder is not None and encoder.cfg != cfg:
            raise ValueError("a shared encoder must have the model's config")
        self.cfg = cfg
        self.task = task
        out = spec.out_channels(cfg.num_classes)
        self.encoder = encoder if encoder is not None else ViTEncoder(cfg)
        self.head = DenseHead(cfg, task, out)

    def forward(self, x: torch.Tensor, offset: tuple[int, int] | None = None) -> torch.Tensor:
        """``offset``: patch offset of ``x`` inside a full-size frame when ``x`` is a training crop."""
        feats, grid = self.encoder(x, offset)
        return self.head(feats, grid, x)


def build_task_models(
    cfg: ModelConfig, tasks: list[str] | tuple[str, ...], shared_encoder: bool = False
) -> nn.ModuleDict:
    """One ``DenseViT`` per task, keyed by task name: independent single-task models, or with
    ``shared_encoder`` a multi-task model whose task models hold the *same* ``ViTEncoder`` object.

    The multi-task model keeps the per-task layout (``models[task]`` is still a whole single-task model, its
    ``state_dict`` has the encoder under its own prefix) so that checkpoints, loaders, evaluation and the
    sharing engine treat it as three models that happen to have equal encoders; ``shared_encoder_of`` and
    ``run_tasks`` are what run the encoder once for all heads.
    """
    if not shared_encoder:
        return nn.ModuleDict({t: DenseViT(cfg, t) for t in tasks})
    encoder = ViTEncoder(cfg)
    return nn.ModuleDict({t: DenseViT(cfg, t, encoder) for t in tasks})


def shared_encoder_of(models: Mapping[str, DenseViT]) -> ViTEncoder | None:
    """The encoder every model of ``models`` holds when they hold one and the same object (a multi-task model
    of more than one task), else None (independent models, or equal weights in separate modules)."""
    encoders = {id(m.encoder): m.encoder for m in models.values()}
    if len(models) < 2 or len(encoders) != 1:
        return None
    return next(iter(encoders.values()))


def run_tasks(
    models: Mapping[str, DenseViT], x: torch.Tensor, offset: tuple[int, int] | None = None
) -> dict[str, torch.Tensor]:
    """Every task's output on ``x``: a shared encoder runs once and feeds each head; independent models run
    one after the other. What a multi-task model costs (one encoder, N heads) and what it trains through."""
    encoder = shared_encoder_of(models)
    if encoder is None:
        return {task: m(x, offset) for task, m in models.items()}
    feats, grid = encoder(x, offset)
    return {task: m.head(feats, grid, x) for task, m in models.items()}
