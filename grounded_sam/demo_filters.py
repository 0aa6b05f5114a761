"""Which of the demo's segment-everything proposals are objects: the rules after CLIP has named them.

The demo CLIP was taught whole objects and "background" (regions of the background, merges of two
objects), never parts of an object: a star's arm looks like a triangle to it, a cross's arm like a
square, and a patch of a smooth gradient can look like any shape. These rules work on the (N, H, W)
bool masks and the classes CLIP gives them:

* :func:`boundary_contrast`: an object's mask ends where the colour changes; a region cut out of a
  smooth background does not (its inside and outside rims have nearly the same colour);
* :func:`parts_of_wholes`: a mask mostly inside a larger mask of its colour that CLIP confidently names
  as one object is a part of that object (the arm of the star, whatever shape it looks like);
* :func:`~grounded_sam.ops.masks.drop_parts`: of masks named as the same phrase that overlap mostly,
  the most confident stays.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from grounded_sam.data import SceneConfig
from grounded_sam.sam.everything.prompt_points import edge_strength
from grounded_sam.text.demo_clip import phrase_words

_SCENES = SceneConfig()


def boundary_contrast(image: np.ndarray, masks: np.ndarray, rim: int = 1) -> np.ndarray:
    """(N,) float32 mean colour edge strength (see
    :func:`~grounded_sam.sam.everything.prompt_points.edge_strength`) over each mask's boundary: the
    pixels within ``rim`` of it on either side, the image border excluded; 0 for an empty mask or one
    that fills the image. An object's outline follows colour edges (tens of levels per pixel); a region
    cut out of a smooth background does not (a gradient: well under one level per pixel).

    Args:
        image: (H, W, 3) uint8 RGB.
        masks: (N, H, W) bool.
    """
    if len(masks) == 0:
        return np.zeros(0, dtype=np.float32)
    inside = torch.from_numpy(np.ascontiguousarray(masks)).float()[:, None]
    size = 2 * rim + 1
    grown = F.max_pool2d(inside, size, stride=1, padding=rim)
    shrunk = -F.max_pool2d(-inside, size, stride=1, padding=rim)
    band = (grown - shrunk).flatten(1)  # 1 within rim of the outline, inside or out
    edges = edge_strength(image).flatten()
    total = band.sum(1)
    return torch.where(total > 0, band @ edges / total.clamp(min=1), 0.0).numpy()


def word_matrices(classes: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """(K, C) and (K, S) float32: whether class K's name holds colour C / shape S of the demo scenes
    (``SceneConfig().colors`` / ``.shapes``); "background" and words like "shape" hold neither."""
    words = [phrase_words(name) for name in classes]
    colours = np.array([[c in w for c in _SCENES.colors] for w in words], dtype=np.float32)
    shapes = np.array([[s in w for s in _SCENES.shapes] for w in words], dtype=np.float32)
    return colours.reshape(len(classes), -1), shapes.reshape(len(classes), -1)


def parts_of_wholes(
    masks: np.ndarray,
    probabilities: np.ndarray,
    classes: Sequence[str],
    *,
    inside: float = 0.8,
    larger: float = 1.3,
    confident: float = 0.8,
) -> np.ndarray:
    """(N,) bool: which masks are parts of another: at least ``inside`` of the mask lies in a mask at
    least ``larger`` times its area, of the same most likely colour, whose most likely shape has
    probability >= ``confident`` (a whole object CLIP is sure of).

    Args:
        masks: (N, H, W) bool.
        probabilities: (N, K) class probabilities of each mask (rows need not sum to 1).
        classes: the K class names (colour and shape words are read from them).
    """
    count = len(masks)
    if count < 2:
        return np.zeros(count, dtype=bool)
    colour_of, shape_of = word_matrices(classes)
    colours, shapes = probabilities @ colour_of, probabilities @ shape_of
    colour, sure = colours.argmax(1), shapes.max(1) >= confident
    flat = torch.from_numpy(np.ascontiguousarray(masks).reshape(count, -1)).float()
    areas = flat.sum(1).numpy()
    shared = (flat @ flat.T).numpy()
    within = shared >= inside * np.maximum(areas[:, None], 1)  # [i, j]: mask i lies in mask j
    wholes = (areas[None, :] >= larger * areas[:, None]) & sure[None, :]
    return (within & wholes & (colour[:, None] == colour[None, :])).any(axis=1)
