"""Several sub-task heads of one width run as one network of grouped convolutions.

Sub-task heads read different features but have the same layout (``DenseHead`` of one width), so the
heads of T sub-tasks are one head T times as wide whose convolutions have ``groups = T``: channel block
``t`` of every stage is task ``t``'s and never mixes with another's. GroupNorm over the concatenated
channels with T times the groups is the per-task GroupNorm (its groups are contiguous channel blocks),
the detail branch's first convolution reads the one image for all tasks; only the small output
convolutions (different widths) run per task. The outputs are those of the separate heads, with fewer and
larger operations: the heads dominate a sub-task's time once most tokens are skipped.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from mtshare_ros.models.vit import DenseHead, NormFn, final_layout, group_norm, token_map


def can_group(heads: list[DenseHead]) -> bool:
    """Whether the heads have one layout (width, detail branch, feature count) and can run grouped."""
    if len(heads) < 2:
        return False
    first = heads[0]

    def layout(h: DenseHead) -> tuple:
        return (
            tuple(h.fuse.weight.shape),
            tuple(h.up1[0].weight.shape),
            tuple(h.up2[0].weight.shape),
            h.up1[1].num_groups,
            h.up2[1].num_groups,
            None if h.detail is None else tuple(h.detail[2].weight.shape),
        )

    return all(layout(h) == layout(first) for h in heads[1:])


class GroupedHeads:
    """The concatenated weights of ``heads`` (see the module docstring) and their grouped forward pass.

    Holds tensors built from the heads' parameters (differentiable: built per call in training, cached
    by the engine otherwise). ``forward`` returns each head's output (the work per task equals the separate
    head's, so ``cost.head_macs`` counts it on the separate head).
    """

    def __init__(self, heads: list[DenseHead]) -> None:
        if not can_group(heads):
            raise ValueError("heads of different layouts cannot run grouped")
        self.tasks = [h.task for h in heads]
        self.groups = len(heads)
        self.out_channels = [h.out.weight.shape[0] for h in heads]

        def cat(get) -> torch.Tensor:
            return torch.cat([get(h) for h in heads])

        self.fuse = (cat(lambda h: h.fuse.weight), cat(lambda h: h.fuse.bias))
        self.up1 = (cat(lambda h: h.up1[0].weight), cat(lambda h: h.up1[0].bias))
        self.norm1 = (cat(lambda h: h.up1[1].weight), cat(lambda h: h.up1[1].bias))
        self.up2 = (cat(lambda h: h.up2[0].weight), cat(lambda h: h.up2[0].bias))
        self.norm2 = (cat(lambda h: h.up2[1].weight), cat(lambda h: h.up2[1].bias))
        self.groups1 = heads[0].up1[1].num_groups * self.groups
        self.groups2 = heads[0].up2[1].num_groups * self.groups
        self.eps = heads[0].up1[1].eps, heads[0].up2[1].eps
        self.out = [(h.out.weight, h.out.bias) for h in heads]  # per task: the output widths differ
        self.detail = None
        if heads[0].detail is not None:
            self.detail = [(cat(lambda h, i=i: h.detail[i].weight), cat(lambda h, i=i: h.detail[i].bias))
                           for i in (0, 2, 4)]
        self.stride = heads[0].detail[0].stride if heads[0].detail is not None else None

    def _outputs(self, x: torch.Tensor) -> torch.Tensor:
        """Every task's output 1x1 convolution on its channel block of ``x`` (channels-last), as matrix products
        on the (pixels, channels) view (on CPU ~6x faster than small convolutions); out in ``final_layout``."""
        b, c, h, w = x.shape
        rows = x.permute(0, 2, 3, 1).reshape(b, h * w, c)  # a view for channels-last memory
        width = c // self.groups
        ys = []
        for t, (wt, bias) in enumerate(self.out):
            y = torch.addmm(bias, rows[..., t * width:(t + 1) * width].reshape(b * h * w, width),
                            wt.view(wt.shape[0], width).t())
            ys.append(y)
        return final_layout(torch.cat(ys, 1).view(b, h, w, -1).permute(0, 3, 1, 2))

    def forward(
        self, feats: list[list[torch.Tensor]], grid: tuple[int, int], image: torch.Tensor, norm: NormFn | None = None
    ) -> list[torch.Tensor]:
        """``feats[t]``: task ``t``'s encoder features, as ``DenseHead.forward`` takes them; ``norm`` as there (its
        groups here are every task's: ``groups * len(heads)``, contiguous per task)."""
        g = self.groups
        norm = norm or group_norm

        def conv(x: torch.Tensor, wb: tuple[torch.Tensor, torch.Tensor], groups: int, **kw) -> torch.Tensor:
            return F.conv2d(x, wb[0], wb[1], groups=groups, **kw)

        x = conv(token_map([f for fl in feats for f in fl], grid), self.fuse, g)  # channels-last, as DenseHead
        x = conv(F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False), self.up1, g, padding=1)
        x = F.gelu(norm(0, x, self.groups1, *self.norm1, self.eps[0]))
        x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
        if self.detail is not None:
            image_cl = image.contiguous(memory_format=torch.channels_last)
            d = F.gelu(conv(image_cl, self.detail[0], 1, stride=self.stride))  # one image, every task's filters
            d = F.gelu(conv(d, self.detail[1], g, padding=1))
            x = x + conv(d, self.detail[2], g)
        x = conv(x, self.up2, g, padding=1)
        x = F.gelu(norm(1, x, self.groups2, *self.norm2, self.eps[1]))
        x = self._outputs(x)
        x = F.interpolate(x, size=tuple(image.shape[-2:]), mode="bilinear", align_corners=False)
        return [DenseHead.activate(t, y) for t, y in zip(self.tasks, x.split(self.out_channels, 1), strict=True)]
