"""Initialise a ViTEncoder from timm ViT weights: a local file, or a timm model name (hub only when online).

timm ViTs carry a class token and a positional embedding for their own grid; the encoder has no class
token, so the prefix is dropped and the grid embedding is resampled to ours. Blocks beyond the encoder's
depth are ignored; any shape mismatch in what is loaded is an error that names the tensor.
"""

from __future__ import annotations

from pathlib import Path

import torch
from timm.layers import resample_abs_pos_embed

from mtshare_ros.models.vit import ViTEncoder


class PretrainedError(RuntimeError):
    """Pretrained weights that cannot be found, fetched or mapped onto the encoder."""


def _read_state(source: str) -> dict[str, torch.Tensor]:
    path = Path(source).expanduser()
    if path.suffix in (".pt", ".pth", ".bin", ".safetensors") or path.exists():
        if not path.is_file():
            raise PretrainedError(f"backbone.pretrained: file not found: {path}")
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
        for key in ("model", "state_dict"):
            if isinstance(state, dict) and key in state and isinstance(state[key], dict):
                state = state[key]
        return state
    import timm

    try:
        return timm.create_model(source, pretrained=True).state_dict()
    except Exception as exc:
        raise PretrainedError(
            f"backbone.pretrained: could not get timm weights {source!r} ({type(exc).__name__}: {exc}). "
            "Model hubs are only reachable when the machine is online; otherwise pass a local weights file."
        ) from exc


def load_timm_encoder(encoder: ViTEncoder, source: str) -> list[str]:
    """Copy timm ViT weights from ``source`` into ``encoder``; returns the encoder keys left untouched."""
    state = _read_state(source)
    own = encoder.state_dict()
    mapped: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if key == "pos_embed":
            n_prefix = value.shape[1] - _grid_tokens(value.shape[1])
            src_grid = _square_grid(value.shape[1] - n_prefix)
            value = resample_abs_pos_embed(
                value.float(), list(encoder.grid_size), list(src_grid), num_prefix_tokens=n_prefix
            )[:, n_prefix:]
        if key in own:
            mapped[key] = value
    bad = [f"{k}: timm {tuple(v.shape)} vs encoder {tuple(own[k].shape)}" for k, v in mapped.items()
           if v.shape != own[k].shape]
    if bad:
        raise PretrainedError(f"backbone.pretrained {source!r} does not fit the model config: " + "; ".join(bad[:5]))
    if not any(k.startswith("blocks.") for k in mapped):
        raise PretrainedError(f"backbone.pretrained {source!r}: no ViT block weights found (keys: {list(state)[:5]})")
    encoder.load_state_dict({**own, **{k: v.to(own[k].dtype) for k, v in mapped.items()}})
    return sorted(set(own) - set(mapped))


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
