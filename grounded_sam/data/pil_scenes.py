"""A second, deliberately different renderer of the same scenes, for generalisation tests.

Shapes are drawn anti-aliased (Pillow at 4x supersampling) over a photo-like background, so a model
trained on :func:`~grounded_sam.data.scenes.make_scene` cannot lean on its exact rasterisation.
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np

from grounded_sam.data.backgrounds import render_background
from grounded_sam.data.scenes import (
    PlacedInstance,
    Scene,
    SceneConfig,
    add_image_noise,
    check_seed,
    finish_scene,
    place_instances,
)
from grounded_sam.data.shapes import COLORS, centre_offsets, clip_window


def make_pil_scene(
    seed: int, size: tuple[int, int] | None = None, config: SceneConfig | None = None
) -> Scene:
    """A deliberately different rendering for generalisation tests, in the same `Scene` format.

    Shapes are drawn with Pillow polygons at 4x supersampling (anti-aliased edges), alpha-composited
    with a radial highlight and a light/dark tint over a photo-like background. Masks are the pixels
    where an instance's visible coverage exceeds one half. `size` (H, W) overrides `config.size`;
    the config's noise, jitter and background settings are not used.
    """
    config = config or SceneConfig()
    if size is not None:
        config = replace(config, size=tuple(size))
    rng = np.random.default_rng(check_seed(seed))
    h, w = config.size
    image = render_background("photo", rng, h, w)
    instances = place_instances(rng, config, image, soft=True)
    visible = np.zeros((len(instances), h, w), dtype=np.float32)
    for i, inst in enumerate(instances):
        assert inst.alpha is not None  # always set for soft footprints
        ys, xs, alpha = clip_window(inst.alpha, inst.y0, inst.x0, h, w)
        visible[:i, ys, xs] *= 1 - alpha
        visible[i, ys, xs] = alpha
        image[ys, xs] += alpha[..., None] * (_pil_fill(inst, rng, ys, xs) - image[ys, xs])
    add_image_noise(image, rng, 1.5)
    masks = visible > 0.5
    keep = masks.any(axis=(1, 2))
    instances = [inst for inst, k in zip(instances, keep, strict=True) if k]
    return finish_scene(image, masks[keep], instances, "photo", int(seed))


def _pil_fill(inst: PlacedInstance, rng: np.random.Generator, ys: slice, xs: slice) -> np.ndarray:
    """(rows, cols, 3) colour of an instance: base tinted towards white or black, with a soft highlight."""
    tint = np.float32(255.0 if rng.random() < 0.5 else 0.0)
    base = np.asarray(COLORS[inst.color], np.float32)
    base += np.float32(rng.uniform(0, 0.15)) * (tint - base)
    r = np.float32(inst.placement.radius)
    angle = rng.uniform(0, 2 * math.pi)
    dy, dx = centre_offsets(inst.placement, ys, xs)
    hy, hx = np.float32(0.4 * math.sin(angle)) * r, np.float32(0.4 * math.cos(angle)) * r
    dist = np.sqrt((dx - hx) ** 2 + (dy - hy) ** 2) / (2 * r)
    gain = np.float32(1.1) - np.float32(0.2) * np.minimum(dist, 1)
    return base * gain[..., None]
