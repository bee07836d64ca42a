"""Image-to-token stems of the encoder: the ViT patch embedding (``patch``) or MobileNetV2 stages (``mobilenetv2``).

``model.stem: mobilenetv2`` replaces the ViT's 16x16 patch convolution by MobileNetV2's stages up to stride 16
(torchvision's ``mobilenet_v2().features[:14]``, 96 channels) and a 1x1 projection to ``embed_dim``, so that the
transformer blocks see the same token grid and everything after the embedding is unchanged. Why: the only
photograph-trained weights installable here are an ImageNet MobileNetV2 (``models/pretrained.py``); as the stem it
gives the ViT low-level features learnt from real images, which the renders alone cannot teach.

The stem has no BatchNorm: each convolution carries its BatchNorm folded in (a bias, and the scale in the weight),
so that loaded ImageNet weights compute what they computed with the BatchNorm's running statistics, the output of
a frame does not depend on the rest of the batch (as the heads' GroupNorm, for data-parallel training), and
inference and ONNX export see plain convolutions. The layer structure is fixed at build time (no data-dependent
control flow), so the stem traces and exports like the patch embedding.
"""

from __future__ import annotations

import torch
from torch import nn

# MobileNetV2's inverted-residual settings (expansion t, output channels c, repeats n, first stride s) up to the
# stride-16 stage: features.1 .. features.13 of torchvision's model
MOBILENETV2_SETTINGS: tuple[tuple[int, int, int, int], ...] = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2),
                                                                (6, 64, 4, 2), (6, 96, 3, 1))
MOBILENETV2_FIRST = 32  # features.0: 3x3 convolution, stride 2, to 32 channels
MOBILENETV2_STRIDE = 16
MOBILENETV2_CHANNELS = 96
STEMS = ("patch", "mobilenetv2")


class ConvAct(nn.Module):
    """One convolution with its BatchNorm folded in, and ReLU6 unless it is a linear (projection) layer."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1, act: bool = True) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, stride, padding=kernel // 2, groups=groups, bias=True)
        self.act = nn.ReLU6() if act else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.conv(x))


class InvertedResidual(nn.Module):
    """MobileNetV2's block: 1x1 expansion (when t > 1), 3x3 depthwise, 1x1 linear projection; the input added back
    when the block keeps size and channels (decided at build: a static attribute, not a runtime test)."""

    def __init__(self, cin: int, cout: int, stride: int, expand: int) -> None:
        super().__init__()
        hidden = cin * expand
        layers = [ConvAct(cin, hidden, 1)] if expand != 1 else []
        layers += [ConvAct(hidden, hidden, 3, stride, groups=hidden), ConvAct(hidden, cout, 1, act=False)]
        self.convs = nn.Sequential(*layers)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.convs(x)
        return x + y if self.residual else y


def mobilenetv2_features() -> nn.Sequential:
    """``features.0`` .. ``features.13`` of MobileNetV2 (width 1.0), BatchNorm folded: image -> 96 channels at 1/16."""
    layers: list[nn.Module] = [ConvAct(3, MOBILENETV2_FIRST, 3, stride=2)]
    cin = MOBILENETV2_FIRST
    for t, c, n, s in MOBILENETV2_SETTINGS:
        for i in range(n):
            layers.append(InvertedResidual(cin, c, s if i == 0 else 1, t))
            cin = c
    return nn.Sequential(*layers)


class MobileNetV2Stem(nn.Module):
    """Image (B, 3, H, W), H and W multiples of 16 -> tokens (B, H/16 * W/16, embed_dim), as timm's ``PatchEmbed``.

    ``features``: MobileNetV2's early stages (``features.i`` is torchvision's ``features.i``, so loaded weights map
    by index); ``proj``: a 1x1 convolution to the transformer's width, fresh when the features come from ImageNet.
    """

    def __init__(self, embed_dim: int) -> None:
        super().__init__()
        self.features = mobilenetv2_features()
        self.proj = nn.Conv2d(MOBILENETV2_CHANNELS, embed_dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(self.features(x)).flatten(2).transpose(1, 2)

    def convs(self) -> list[tuple[str, nn.Conv2d]]:
        """Every feature convolution in order, with its name under ``features``: what a MobileNetV2 file's
        convolution/BatchNorm pairs are loaded into, one by one (``models/pretrained.py``)."""
        return [(name.removesuffix(".conv"), m.conv) for name, m in self.features.named_modules()
                if isinstance(m, ConvAct)]
