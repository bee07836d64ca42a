"""Texture and mesh files shipped by installed pip packages (no downloads), grouped by the package they come from.

Sources (each optional: a missing package just means fewer assets):

- ``labmaze`` (Apache-2.0): wall/floor/ceiling textures.
- ``pybullet_data`` (zlib): toys and household meshes (duck, teddy, mug, bunny, jenga, lego, soccer ball),
  1000 procedural ``random_urdfs`` objects and a few textures.
- ``dm_control`` (Apache-2.0): Kinova arm parts and the dog model's bones, as odd-shaped clutter.
- ``gymnasium_robotics`` (MIT): the Franka kitchen's appliances (microwave, kettle, oven, hood, cabinets) and
  its marble/tile/wood/metal textures. This source is held out of training entirely (see domain.py), so the
  generalisation split shows objects and materials that no model has seen.

Lists are sorted so that seeded choices are reproducible across machines.
"""

from __future__ import annotations

import functools
import importlib.util
from dataclasses import dataclass
from pathlib import Path

import numpy as np

MESH_SOURCES = ("pybullet_data", "dm_control", "gymnasium_robotics")
TEXTURE_SOURCES = ("labmaze", "pybullet_data", "gymnasium_robotics")


def _package_dir(name: str) -> Path | None:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


@dataclass(frozen=True)
class TextureSet:
    """Texture files by use: walls, floors, ceilings and general surfaces (furniture, props)."""

    walls: tuple[Path, ...] = ()
    floors: tuple[Path, ...] = ()
    ceilings: tuple[Path, ...] = ()
    surfaces: tuple[Path, ...] = ()
    skies: tuple[Path, ...] = ()  # seen through windows

    def __add__(self, other: TextureSet) -> TextureSet:
        return TextureSet(self.walls + other.walls, self.floors + other.floors, self.ceilings + other.ceilings,
                          self.surfaces + other.surfaces, self.skies + other.skies)


@dataclass(frozen=True)
class MeshAsset:
    """A clutter mesh: file (OBJ or binary STL), optional texture, default colour, whether it is y-up, source."""

    name: str
    path: Path
    texture: Path | None
    rgba: tuple[float, float, float, float]
    y_up: bool = False
    source: str = ""


@functools.cache
def textures(source: str) -> TextureSet:
    """The textures of one source (empty when its package is not installed)."""
    if source == "labmaze":
        root = _package_dir("labmaze")
        if root is None:
            return TextureSet()
        a = root / "assets"
        # Only diffuse maps (*_d.png); *_m.png are masks that render black.
        return TextureSet(
            walls=tuple(sorted(a.glob("style_*/wall_*_d.png"))),
            floors=tuple(sorted(p for p in a.glob("style_*/floor_*_d.png") if "team" not in p.name)),
            ceilings=tuple(sorted(a.glob("style_*/ceiling*_d.png"))),
            skies=tuple(sorted(a.glob("sky_*/ft.png")) + sorted(a.glob("sky_*/lf.png"))),
        )
    if source == "pybullet_data":
        root = _package_dir("pybullet_data")
        if root is None:
            return TextureSet()
        # (PNG only: MuJoCo reads no JPEG or GIF)
        files = tuple(p for p in (root / "tex256.png", root / "jenga" / "jenga.png", root / "table" / "table.png",
                                  root / "checker_blue.png", root / "uvmap.png") if p.is_file())
        return TextureSet(surfaces=files)
    if source == "gymnasium_robotics":
        root = _package_dir("gymnasium_robotics")
        if root is None:
            return TextureSet()
        files = tuple(sorted((root / "envs/assets/kitchen_franka/kitchen_assets/textures").glob("*.png")))
        floors = tuple(p for p in files if "tile" in p.name or "wood" in p.name)
        walls = tuple(p for p in files if "marble" in p.name or "tile" in p.name)
        return TextureSet(walls=walls, floors=floors, surfaces=files)
    raise ValueError(f"unknown texture source {source!r}; known: {TEXTURE_SOURCES}")


@functools.cache
def meshes(source: str) -> tuple[MeshAsset, ...]:
    """The clutter meshes of one source (empty when its package is not installed)."""
    if source not in MESH_SOURCES:
        raise ValueError(f"unknown mesh source {source!r}; known: {MESH_SOURCES}")
    root = _package_dir(source)
    if root is None:
        return ()
    out: list[MeshAsset] = []
    if source == "pybullet_data":
        out += [
            MeshAsset("duck", root / "duck.obj", root / "duckCM.png", (1, 1, 1, 1), y_up=True),
            MeshAsset("mug", root / "objects" / "mug.obj", None, (0.8, 0.2, 0.2, 1)),
            MeshAsset("teddy", root / "teddy2_VHACD_CHs.obj", None, (0.55, 0.38, 0.22, 1)),
            MeshAsset("bunny", root / "bunny.obj", None, (0.85, 0.85, 0.8, 1), y_up=True),
            MeshAsset("jenga", root / "jenga" / "jenga.obj", root / "jenga" / "jenga.png", (1, 1, 1, 1)),
            MeshAsset("lego", root / "lego" / "lego.obj", None, (0.9, 0.1, 0.1, 1)),
            MeshAsset("soccerball", root / "soccerball.obj", None, (0.95, 0.95, 0.95, 1)),
        ]
        out += [MeshAsset(f"random_{p.parent.name}", p, None, (0.6, 0.6, 0.6, 1))
                for p in sorted((root / "random_urdfs").glob("*/*.obj"))]
    elif source == "dm_control":
        kinova = sorted((root / "third_party/kinova/meshes_decimated").glob("*.stl"))
        bones = sorted(p for p in (root / "suite/dog_assets").glob("*.stl") if p.stat().st_size > 40_000)
        out += [MeshAsset(f"kinova_{p.stem}", p, None, (0.3, 0.3, 0.32, 1)) for p in kinova]
        out += [MeshAsset(f"dog_{p.stem}", p, None, (0.9, 0.87, 0.8, 1)) for p in bones]
    else:
        kitchen = root / "envs/assets/kitchen_franka/kitchen_assets/meshes"
        names = ("micro", "kettle", "oven", "hood", "faucet", "burnerplate", "cabinetbase", "slidecabinet",
                 "hingecabinet", "knob", "lightswitchbase")
        out += [MeshAsset(f"kitchen_{n}", kitchen / f"{n}.stl", None, (0.75, 0.75, 0.78, 1)) for n in names]
    present = [m for m in out if m.path.is_file() and (m.texture is None or m.texture.is_file())]
    usable = _usable({str(m.path) for m in present})
    return tuple(m for m in present if str(m.path) in usable)


def _usable(paths: set[str]) -> set[str]:
    """The mesh files MuJoCo compiles (some shipped files have non-finite or degenerate vertices). All are
    compiled in one model (about 1 s for a thousand meshes, against 2 s one by one); only if that fails is
    each compiled alone, to find the ones that do not."""
    from mtshare_ros.data.mujoco_gl import import_mujoco

    mujoco = import_mujoco()

    def compiles(group: list[str]) -> bool:
        assets = "".join(f'<mesh name="m{i}" file="{p}"/>' for i, p in enumerate(group))
        geoms = "".join(f'<geom type="mesh" mesh="m{i}" contype="0" conaffinity="0" mass="0.1"/>'
                        for i in range(len(group)))
        try:
            mujoco.MjModel.from_xml_string(f"<mujoco><asset>{assets}</asset><worldbody>{geoms}</worldbody></mujoco>")
        except ValueError:
            return False
        return True

    def sound(path: str) -> bool:
        verts = mesh_vertices(path)
        return len(verts) >= 4 and bool(np.isfinite(verts).all()) and np.ptp(verts, axis=0).max() > 0

    candidates = sorted(p for p in paths if sound(p))
    if not candidates or compiles(candidates):
        return set(candidates)
    return {p for p in candidates if compiles([p])}


@functools.lru_cache(maxsize=256)
def mesh_vertices(path: str) -> np.ndarray:
    """(N, 3) vertices of an OBJ or binary STL file, for sizing and setting a mesh down on a surface."""
    p = Path(path)
    if p.suffix.lower() == ".stl":
        data = p.read_bytes()
        count = int(np.frombuffer(data, dtype="<u4", count=1, offset=80)[0])
        tri = np.frombuffer(data, dtype=np.dtype([("n", "<f4", 3), ("v", "<f4", (3, 3)), ("a", "<u2")]),
                            count=count, offset=84)
        return tri["v"].reshape(-1, 3).astype(np.float64)
    with open(p) as fh:
        rows = [line.split()[1:4] for line in fh if line.startswith("v ")]
    return np.asarray(rows, dtype=np.float64)
