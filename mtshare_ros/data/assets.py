"""Texture and mesh files shipped by installed packages (no downloads): labmaze and pybullet_data.

labmaze (Apache-2.0) ships wall/floor/ceiling textures and sky boxes; pybullet_data (zlib) ships a few
small textured meshes. Both are optional at import time; a missing package just means fewer assets.
"""

from __future__ import annotations

import functools
import importlib.util
from dataclasses import dataclass
from pathlib import Path


def _package_dir(name: str) -> Path | None:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


@dataclass(frozen=True)
class TextureSet:
    """Sorted texture file lists (sorted so that seeded choices are reproducible across machines)."""

    walls: tuple[Path, ...]
    floors: tuple[Path, ...]
    ceilings: tuple[Path, ...]
    skies: tuple[Path, ...]


@dataclass(frozen=True)
class MeshAsset:
    """A clutter mesh: OBJ file, optional texture, default colour (the room scales it to a tabletop size)."""

    name: str
    obj: Path
    texture: Path | None
    rgba: tuple[float, float, float, float]


@functools.lru_cache(maxsize=1)
def labmaze_textures() -> TextureSet:
    root = _package_dir("labmaze")
    if root is None:
        return TextureSet((), (), (), ())
    assets = root / "assets"
    # Only diffuse maps (*_d.png); *_m.png are masks that render black.
    walls = tuple(sorted(assets.glob("style_*/wall_*_d.png")))
    floors = tuple(sorted(p for p in assets.glob("style_*/floor_*_d.png") if "team" not in p.name))
    ceilings = tuple(sorted(assets.glob("style_*/ceiling*_d.png")))
    skies = tuple(sorted(assets.glob("sky_*/ft.png")) + sorted(assets.glob("sky_*/lf.png")))
    return TextureSet(walls, floors, ceilings, skies)


@functools.lru_cache(maxsize=1)
def pybullet_meshes() -> tuple[MeshAsset, ...]:
    root = _package_dir("pybullet_data")
    if root is None:
        return ()
    candidates = [
        MeshAsset("duck", root / "duck.obj", root / "duckCM.png", (1, 1, 1, 1)),
        MeshAsset("mug", root / "objects" / "mug.obj", None, (0.8, 0.2, 0.2, 1)),
        MeshAsset("teddy", root / "teddy2_VHACD_CHs.obj", None, (0.55, 0.38, 0.22, 1)),
        MeshAsset("bunny", root / "bunny.obj", None, (0.85, 0.85, 0.8, 1)),
    ]
    return tuple(m for m in candidates if m.obj.is_file() and (m.texture is None or m.texture.is_file()))
