"""inpaint(): removing synthetic shapes restores the background; mask checks, dilation, backend errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from grounded_sam.data import SceneConfig, make_scene
from grounded_sam.inpaint import as_mask, dilate_mask, inpaint

NO_NOISE = {"color_jitter": 0.0, "shading": 0.0, "pixel_noise": 0.0, "image_noise": 0.0}


def _scene(background: str, seed: int):
    config = SceneConfig(
        size=(96, 128),
        min_objects=1,
        max_objects=2,
        backgrounds=(background,),
        size_range=(0.3, 0.4),
        **NO_NOISE,
    )
    return make_scene(seed, config)


def _background_fit(image: np.ndarray, known: np.ndarray) -> np.ndarray:
    """(H, W, 3) float: a per-channel quadratic surface fitted to the pixels where ``known`` is True."""
    h, w = known.shape
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    x, y = x / w, y / h
    design = np.stack([np.ones_like(x), x, y, x * x, y * y, x * y], axis=-1)
    coef, *_ = np.linalg.lstsq(design[known], image[known].astype(np.float64), rcond=None)
    return design @ coef


@pytest.mark.parametrize(("background", "seed"), [("flat", 0), ("flat", 5), ("gradient", 1), ("gradient", 4)])
@pytest.mark.parametrize("backend", ["remove", "ns"])
def test_removing_a_shape_restores_the_background(background: str, seed: int, backend: str) -> None:
    scene = _scene(background, seed)
    target = scene.masks[0]
    region = dilate_mask(target, 2)
    known = ~dilate_mask(scene.masks.any(axis=0), 3)
    expected = _background_fit(scene.image, known)

    out = inpaint(scene.image, target, backend=backend, dilate=2)

    before = np.abs(scene.image[region].astype(np.float64) - expected[region]).mean()
    after = np.abs(out[region].astype(np.float64) - expected[region]).mean()
    assert before > 30, "the shape must stand out from the background for this test to mean anything"
    assert after < 0.15 * before, (before, after)
    np.testing.assert_array_equal(out[~region], scene.image[~region])
    assert out.dtype == np.uint8 and out.shape == scene.image.shape


def test_dilation_grows_the_mask_by_the_given_radius() -> None:
    mask = np.zeros((40, 40), dtype=bool)
    mask[18:22, 18:22] = True
    grown = dilate_mask(mask, 3)
    assert grown[mask].all() and grown.sum() > mask.sum()
    rows = np.flatnonzero(grown.any(axis=1))
    assert (rows.min(), rows.max()) == (15, 24)
    np.testing.assert_array_equal(dilate_mask(mask, 0), mask)
    with pytest.raises(ValueError, match=">= 0"):
        dilate_mask(mask, -1)


def test_dilation_changes_only_the_grown_region() -> None:
    scene = _scene("flat", 0)
    tight = inpaint(scene.image, scene.masks[0], dilate=0)
    wide = inpaint(scene.image, scene.masks[0], dilate=6)
    changed_tight = (tight != scene.image).any(axis=2)
    changed_wide = (wide != scene.image).any(axis=2)
    assert changed_wide.sum() > changed_tight.sum()
    assert not changed_wide[~dilate_mask(scene.masks[0], 6)].any()


def test_mask_forms_are_accepted() -> None:
    scene = _scene("flat", 0)
    h, w = scene.image.shape[:2]
    as_bool = inpaint(scene.image, scene.masks[0])
    np.testing.assert_array_equal(inpaint(scene.image, scene.masks[0].astype(np.uint8) * 255), as_bool)
    np.testing.assert_array_equal(inpaint(scene.image, torch.from_numpy(scene.masks[0])), as_bool)
    stack = np.zeros((3, h, w), dtype=bool)
    stack[1] = scene.masks[0]
    np.testing.assert_array_equal(inpaint(scene.image, stack), as_bool)
    np.testing.assert_array_equal(as_mask(scene.masks[:1].astype(np.float32), (h, w)), scene.masks[0])


def test_empty_mask_returns_an_unchanged_copy() -> None:
    scene = _scene("flat", 0)
    out = inpaint(scene.image, np.zeros(scene.image.shape[:2], dtype=bool))
    np.testing.assert_array_equal(out, scene.image)
    assert out is not scene.image


@pytest.mark.parametrize(
    ("mask", "error", "match"),
    [
        (np.zeros((10, 10), dtype=bool), ValueError, r"shape \(H, W\) = \(96, 128\)"),
        (np.zeros((96,), dtype=bool), ValueError, "shape"),
        (np.full((96, 128), 0.5), TypeError, "0/1"),
        (np.full((96, 128), "x"), TypeError, "bool"),
    ],
)
def test_bad_masks_raise_clearly(mask: np.ndarray, error: type, match: str) -> None:
    scene = _scene("flat", 0)
    with pytest.raises(error, match=match):
        inpaint(scene.image, mask)


def test_backend_and_prompt_errors() -> None:
    scene = _scene("flat", 0)
    with pytest.raises(ValueError, match="unknown inpainting backend"):
        inpaint(scene.image, scene.masks[0], backend="magic")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="backend='diffusers'"):
        inpaint(scene.image, scene.masks[0], "a bicycle")
    with pytest.raises(ValueError, match="needs a prompt"):
        inpaint(scene.image, scene.masks[0], backend="diffusers")
    with pytest.raises(ValueError, match="radius"):
        inpaint(scene.image, scene.masks[0], radius=0)
