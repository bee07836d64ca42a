"""A small MJCF writer that remembers, for every geom, the semantic class and instance it belongs to.

Why not MuJoCo's ``MjSpec``: the XML string is easy to inspect, diff and cache, and the label tables are
kept next to it, so the renderer can turn MuJoCo's per-pixel geom ids into class and instance ids.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from xml.sax.saxutils import quoteattr

import numpy as np

from mtshare_ros.classes import SYNTHETIC_CLASSES


def class_id(name: str) -> int:
    """Index of ``name`` in SYNTHETIC_CLASSES (raises ValueError naming the unknown class)."""
    try:
        return SYNTHETIC_CLASSES.index(name)
    except ValueError:
        raise ValueError(f"unknown synthetic class {name!r}; expected one of {SYNTHETIC_CLASSES}") from None


def yaw_quat(yaw: float) -> np.ndarray:
    return np.array([math.cos(yaw / 2), 0.0, 0.0, math.sin(yaw / 2)])


def quat_mul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    w1, x1, y1, z1 = a
    w2, x2, y2, z2 = b
    return np.array([
        w1 * w2 - x1 * x2 - y1 * y2 - z1 * z2,
        w1 * x2 + x1 * w2 + y1 * z2 - z1 * y2,
        w1 * y2 - x1 * z2 + y1 * w2 + z1 * x2,
        w1 * z2 + x1 * y2 - y1 * x2 + z1 * w2,
    ])


def _fmt(values) -> str:
    return " ".join(f"{float(v):.5g}" for v in np.ravel(values))


@dataclass
class Frame2D:
    """Placement of an object's local frame on the floor: translation and yaw about world z."""

    x: float
    y: float
    yaw: float = 0.0
    z: float = 0.0

    def apply(self, local: tuple[float, float, float]) -> np.ndarray:
        c, s = math.cos(self.yaw), math.sin(self.yaw)
        lx, ly, lz = local
        return np.array([self.x + c * lx - s * ly, self.y + s * lx + c * ly, self.z + lz])


@dataclass
class MjcfBuilder:
    """Collects assets, geoms (with labels), lights and mocap bodies, then writes one MJCF document."""

    textures: list[str] = field(default_factory=list)
    materials: list[str] = field(default_factory=list)
    meshes: list[str] = field(default_factory=list)
    world: list[str] = field(default_factory=list)
    bodies: dict[str, list[str]] = field(default_factory=dict)
    body_attrs: dict[str, str] = field(default_factory=dict)
    labels: dict[str, tuple[int, int]] = field(default_factory=dict)
    instance_classes: dict[int, int] = field(default_factory=dict)
    _next_instance: int = 1
    _texture_names: dict[str, str] = field(default_factory=dict)
    _mesh_names: dict[str, str] = field(default_factory=dict)

    # -- assets ---------------------------------------------------------------------------------------
    def file_texture(self, path: Path) -> str:
        key = str(path)
        if key not in self._texture_names:
            name = f"tex{len(self.textures)}"
            self.textures.append(f'<texture name="{name}" type="2d" file={quoteattr(key)}/>')
            self._texture_names[key] = name
        return self._texture_names[key]

    def builtin_texture(self, builtin: str, rgb1, rgb2, size: int = 64, mark: str = "none",
                        random: float = 0.0, markrgb=(0, 0, 0)) -> str:
        name = f"tex{len(self.textures)}"
        self.textures.append(
            f'<texture name="{name}" type="2d" builtin="{builtin}" rgb1="{_fmt(rgb1)}" rgb2="{_fmt(rgb2)}" '
            f'width="{size}" height="{size}" mark="{mark}" random="{random:.3g}" markrgb="{_fmt(markrgb)}"/>'
        )
        return name

    def material(self, rgba=(1, 1, 1, 1), texture: str | None = None, texrepeat=(1, 1), texuniform: bool = False,
                 specular: float = 0.2, shininess: float = 0.2, emission: float = 0.0) -> str:
        name = f"mat{len(self.materials)}"
        tex = f' texture="{texture}" texrepeat="{_fmt(texrepeat)}" texuniform="{str(texuniform).lower()}"' \
            if texture else ""
        self.materials.append(
            f'<material name="{name}" rgba="{_fmt(rgba)}" specular="{specular:.3g}" '
            f'shininess="{shininess:.3g}" emission="{emission:.3g}"{tex}/>'
        )
        return name

    def mesh(self, path: Path, scale: float) -> str:
        key = f"{path}:{scale}"
        if key not in self._mesh_names:
            name = f"mesh{len(self.meshes)}"
            self.meshes.append(f'<mesh name="{name}" file={quoteattr(str(path))} scale="{_fmt([scale] * 3)}"/>')
            self._mesh_names[key] = name
        return self._mesh_names[key]

    # -- labelled geometry ----------------------------------------------------------------------------
    def new_instance(self, class_name: str) -> int:
        inst = self._next_instance
        self._next_instance += 1
        self.instance_classes[inst] = class_id(class_name)
        return inst

    def mocap_body(self, name: str, pos, quat=(1, 0, 0, 0)) -> str:
        self.bodies[name] = []
        self.body_attrs[name] = f'pos="{_fmt(pos)}" quat="{_fmt(quat)}"'
        return name

    def geom(self, instance: int, gtype: str, size, pos, material: str, quat=(1, 0, 0, 0), body: str | None = None,
             mesh: str | None = None, class_name: str | None = None) -> str:
        """Add a visual-only geom; its class is the instance's class unless ``class_name`` overrides it."""
        name = f"g{len(self.labels)}"
        cls = class_id(class_name) if class_name else self.instance_classes[instance]
        self.labels[name] = (cls, instance)
        extra = f' mesh="{mesh}"' if mesh else f' size="{_fmt(size)}"'
        xml = (f'<geom name="{name}" type="{gtype}"{extra} pos="{_fmt(pos)}" quat="{_fmt(quat)}" '
               f'material="{material}" contype="0" conaffinity="0" mass="0.1"/>')
        (self.bodies[body] if body else self.world).append(xml)
        return name

    def box(self, instance: int, frame: Frame2D, half, local_pos, material: str, yaw: float = 0.0, **kw) -> str:
        """Box whose centre is ``local_pos`` in ``frame`` and which is turned by frame.yaw + yaw."""
        return self.geom(instance, "box", half, frame.apply(local_pos), material,
                         quat=yaw_quat(frame.yaw + yaw), **kw)

    def cylinder(self, instance: int, frame: Frame2D, radius: float, half_height: float, local_pos, material: str,
                 **kw) -> str:
        return self.geom(instance, "cylinder", (radius, half_height), frame.apply(local_pos), material,
                         quat=yaw_quat(frame.yaw), **kw)

    def raw(self, xml: str, body: str | None = None) -> None:
        """Unlabelled element (light, camera) in the world or in a mocap body."""
        (self.bodies[body] if body else self.world).append(xml)

    # -- output ---------------------------------------------------------------------------------------
    def to_xml(self, extent: float, center, headlight: str) -> str:
        body_xml = []
        for name, geoms in self.bodies.items():
            inner = "\n      ".join(geoms)
            body_xml.append(f'<body name="{name}" mocap="true" {self.body_attrs[name]}>\n      {inner}\n    </body>')
        return f"""<mujoco model="mtshare_room">
  <compiler inertiafromgeom="true" boundmass="0.01" boundinertia="1e-5"/>
  <option gravity="0 0 0"/>
  <statistic extent="{extent:.4g}" center="{_fmt(center)}"/>
  <visual>
    <global offwidth="1280" offheight="960"/>
    <quality shadowsize="1024" offsamples="0"/>
    <map znear="{0.02 / extent:.5g}" zfar="{60.0 / extent:.5g}" shadowclip="{8.0 / extent:.4g}"/>
    {headlight}
  </visual>
  <asset>
    {chr(10).join('    ' + t for t in self.textures).strip()}
    {chr(10).join('    ' + m for m in self.materials).strip()}
    {chr(10).join('    ' + m for m in self.meshes).strip()}
  </asset>
  <worldbody>
    {chr(10).join('    ' + g for g in self.world).strip()}
    {chr(10).join('    ' + b for b in body_xml).strip()}
  </worldbody>
</mujoco>
"""
