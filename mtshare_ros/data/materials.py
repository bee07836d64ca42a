"""Random colours and materials (plain, wood, fabric, procedural patterns, texture files) for one room.

Every draw comes from the room's generator, so the palette is part of what the seed fixes.
"""

from __future__ import annotations

import colorsys

import numpy as np

from mtshare_ros.data.assets import TextureSet
from mtshare_ros.data.mjcf import MjcfBuilder

RGBA = tuple[float, float, float, float]


class Palette:
    """Draws colours from ``rng`` and registers the materials with ``builder``."""

    def __init__(self, rng: np.random.Generator, builder: MjcfBuilder, textures: TextureSet | None = None):
        self.rng = rng
        self.b = builder
        self.textures = textures or TextureSet()

    def colour(self, hue: float | None = None, sat: tuple[float, float] = (0.1, 0.7),
               val: tuple[float, float] = (0.3, 0.95)) -> RGBA:
        h = self.rng.uniform(0, 1) if hue is None else hue
        r, g, b = colorsys.hsv_to_rgb(h, self.rng.uniform(*sat), self.rng.uniform(*val))
        return (r, g, b, 1.0)

    def wood(self) -> str:
        r, g, b, _ = self.colour(hue=self.rng.uniform(0.05, 0.11), sat=(0.35, 0.75), val=(0.25, 0.8))
        tex = self.b.builtin_texture("gradient", (r, g, b), (r * 0.8, g * 0.8, b * 0.8), size=32,
                                     mark="random", random=0.03, markrgb=(r * 0.7, g * 0.7, b * 0.7))
        return self.b.material(texture=tex, rgba=(1, 1, 1, 1), specular=0.3, shininess=0.4)

    def fabric(self) -> str:
        r, g, b, _ = self.colour(sat=(0.15, 0.8), val=(0.25, 0.85))
        tex = self.b.builtin_texture("flat", (r, g, b), (r, g, b), size=64, mark="random", random=0.15,
                                     markrgb=(r * 0.8, g * 0.8, b * 0.8))
        return self.b.material(texture=tex, texrepeat=(4, 4), specular=0.05, shininess=0.05)

    def plain(self, rgba: RGBA | None = None, specular: float = 0.3, emission: float = 0.0) -> str:
        """An untextured material; with no ``rgba`` a random colour is drawn."""
        return self.b.material(rgba=rgba or self.colour(), specular=specular, shininess=0.3, emission=emission)

    def procedural(self) -> str:
        """A MuJoCo builtin pattern (checker, gradient or flat, with random, edge or cross marks) in random
        colours: surfaces real cameras see are rarely one flat colour."""
        rng = self.rng
        kind = ("checker", "gradient", "flat")[int(rng.integers(3))]
        mark = ("random", "edge", "cross", "none")[int(rng.integers(4))]
        tex = self.b.builtin_texture(kind, self.colour()[:3], self.colour()[:3], size=int(rng.choice([32, 64, 128])),
                                     mark=mark, random=float(rng.uniform(0.0, 0.3)), markrgb=self.colour()[:3])
        rep = float(rng.uniform(1, 6))
        return self.b.material(texture=tex, texrepeat=(rep, rep), specular=float(rng.uniform(0.0, 0.6)),
                               shininess=float(rng.uniform(0.0, 0.8)))

    def file_surface(self) -> str | None:
        """A texture file of the domain's sources, tinted; None when the domain has none."""
        pool = self.textures.surfaces + self.textures.floors
        if not pool:
            return None
        tex = self.b.file_texture(pool[int(self.rng.integers(len(pool)))])
        tint = self.colour(sat=(0.0, 0.3), val=(0.7, 1.0))
        return self.b.material(rgba=tint, texture=tex, texrepeat=(1, 1), specular=float(self.rng.uniform(0.05, 0.5)))

    def surface(self) -> str:
        """Any of the materials above, for furniture bodies and fronts (domain randomisation)."""
        pick = float(self.rng.uniform())
        if pick < 0.3:
            return self.plain(self.colour(sat=(0.0, 0.6)), specular=float(self.rng.uniform(0.05, 0.8)))
        if pick < 0.55:
            return self.wood()
        if pick < 0.7:
            return self.fabric()
        if pick < 0.85:
            return self.procedural()
        return self.file_surface() or self.procedural()
