"""What a rendered dataset may contain: room kinds and asset sources, as a named domain.

Training data and the test split come from the ``train`` domain. The ``generalisation`` domain is what
training never sees: kitchens (a room kind held out) furnished with the ``gymnasium_robotics`` kitchen
meshes and textures (an asset source held out) besides the shared ones. Scores on it, beside the test
split's, say how much a model learned rooms rather than this generator.
"""

from __future__ import annotations

from dataclasses import dataclass

# The room kinds, and how often each is drawn (relative): corridors are plain and short of furniture, so fewer of them.
KIND_WEIGHTS = {"living": 3.0, "office": 3.0, "bedroom": 2.5, "corridor": 1.5, "kitchen": 3.0}


@dataclass(frozen=True)
class SceneDomain:
    """Room kinds and asset sources one dataset draws from."""

    name: str
    room_kinds: tuple[str, ...]
    mesh_sources: tuple[str, ...]
    texture_sources: tuple[str, ...]


TRAIN_DOMAIN = SceneDomain(
    "train",
    room_kinds=("living", "office", "bedroom", "corridor"),
    mesh_sources=("pybullet_data", "dm_control"),
    texture_sources=("labmaze", "pybullet_data"),
)
GENERALISATION_DOMAIN = SceneDomain(
    "generalisation",
    room_kinds=("kitchen",),
    mesh_sources=("gymnasium_robotics", "pybullet_data", "dm_control"),
    texture_sources=("gymnasium_robotics", "labmaze", "pybullet_data"),
)
DOMAINS = {d.name: d for d in (TRAIN_DOMAIN, GENERALISATION_DOMAIN)}


def domain(name: str) -> SceneDomain:
    """The domain called ``name`` (ValueError naming the known ones otherwise)."""
    try:
        return DOMAINS[name]
    except KeyError:
        raise ValueError(f"unknown scene domain {name!r}; known: {sorted(DOMAINS)}") from None
