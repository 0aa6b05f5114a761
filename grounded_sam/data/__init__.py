"""Synthetic scenes of coloured shapes: training data for the embedded model and fixtures for tests.

Example::

    from grounded_sam.data import SceneConfig, make_scene

    scene = make_scene(0, SceneConfig(size=(128, 128)))
    scene.image      # (128, 128, 3) uint8 RGB
    scene.masks      # (N, 128, 128) bool, visible parts, disjoint
    scene.boxes      # (N, 4) float32 XYXY, x2 / y2 exclusive
    scene.labels     # ["red circle", ...]
"""

from grounded_sam.data.backgrounds import BACKGROUND_KINDS, render_background
from grounded_sam.data.folder import load_scene, write_scene, write_scene_folder
from grounded_sam.data.pil_scenes import make_pil_scene
from grounded_sam.data.scenes import (
    Scene,
    SceneConfig,
    all_class_names,
    iter_scenes,
    make_scene,
    scene_seed,
)
from grounded_sam.data.shapes import COLORS, DEFAULT_COLORS, SHAPE_NAMES

__all__ = [
    "BACKGROUND_KINDS",
    "COLORS",
    "DEFAULT_COLORS",
    "SHAPE_NAMES",
    "Scene",
    "SceneConfig",
    "all_class_names",
    "iter_scenes",
    "load_scene",
    "make_pil_scene",
    "make_scene",
    "render_background",
    "scene_seed",
    "write_scene",
    "write_scene_folder",
]
