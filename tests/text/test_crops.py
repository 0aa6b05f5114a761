"""Tests for grounded_sam.text.crops: boxes of masks, margins, and the normalised crop batch."""

from __future__ import annotations

import numpy as np
import open_clip
import pytest
import torch

from grounded_sam.ops.boxes import masks_to_boxes
from grounded_sam.text.crops import (
    ClipInput,
    background_colour,
    expand_boxes,
    fit_aspect,
    image_to_tensor,
    prepare_crops,
)

SPEC = ClipInput(16, (0.4, 0.5, 0.6), (0.2, 0.25, 0.3))
MEAN = np.array(SPEC.mean)
COLOUR = np.array([200, 30, 90], dtype=np.uint8)


def _rgb(crops: torch.Tensor) -> np.ndarray:
    """Normalised (N, 3, h, w) crops back to (N, h, w, 3) RGB in [0, 1]."""
    mean = torch.tensor(SPEC.mean).view(1, 3, 1, 1)
    std = torch.tensor(SPEC.std).view(1, 3, 1, 1)
    return (crops * std + mean).permute(0, 2, 3, 1).numpy()


def _crops(image: np.ndarray, boxes, masks=None, background="mean", spec=SPEC) -> torch.Tensor:
    tensor_masks = None if masks is None else torch.from_numpy(masks)
    return prepare_crops(
        image_to_tensor(image, torch.device("cpu")),
        torch.tensor(np.asarray(boxes, dtype=np.float32)),
        spec,
        tensor_masks,
        background,
    )


def test_expand_boxes_grows_by_the_longer_side_and_clips_at_the_borders() -> None:
    boxes = np.array([[10, 10, 30, 20], [0, 2, 10, 6], [35, 25, 40, 30]], dtype=np.float32)
    grown = expand_boxes(boxes, 0.1, height=30, width=40)
    np.testing.assert_allclose(grown[0], [8, 8, 32, 22])  # pad = 0.1 * 20
    np.testing.assert_allclose(grown[1], [0, 1, 11, 7])  # left edge clipped at 0
    np.testing.assert_allclose(grown[2], [34.5, 24.5, 40, 30])  # far edges clipped at (W, H)
    np.testing.assert_array_equal(expand_boxes(boxes, 0.0, 30, 40), boxes)


def test_fit_aspect_widens_about_the_centre() -> None:
    boxes = torch.tensor([[0.0, 0.0, 10.0, 4.0], [2.0, 0.0, 4.0, 8.0]])
    np.testing.assert_allclose(fit_aspect(boxes, (16, 16)), [[0, -3, 10, 7], [-1, 0, 7, 8]])
    np.testing.assert_allclose(fit_aspect(boxes, (8, 16)), [[0, -0.5, 10, 4.5], [-5, 0, 11, 8]])


def test_background_outside_the_mask_is_neutralised() -> None:
    # A gradient image; the mask's square frame maps one image pixel to one crop pixel.
    rows, cols = np.meshgrid(np.arange(32), np.arange(32), indexing="ij")
    image = np.stack([rows * 7, cols * 7, (rows + cols) * 3], axis=-1).astype(np.uint8)
    mask = np.zeros((1, 32, 32), dtype=bool)
    mask[0, 8:24, 8:16] = True  # box (8, 8, 16, 24) -> square frame (4, 8, 20, 24)
    crop = _rgb(_crops(image, masks_to_boxes(mask), mask))[0]
    np.testing.assert_allclose(crop[:, 4:12], image[8:24, 8:16] / 255.0, atol=1e-5)
    np.testing.assert_allclose(crop[:, :4], np.broadcast_to(MEAN, (16, 4, 3)), atol=1e-6)
    np.testing.assert_allclose(crop[:, 12:], np.broadcast_to(MEAN, (16, 4, 3)), atol=1e-6)
    # The model sees the mean colour as exact zeros.
    assert torch.count_nonzero(_crops(image, masks_to_boxes(mask), mask)[0, :, :, :4]) == 0


@pytest.mark.parametrize(
    ("background", "fill"), [("grey", (0.5, 0.5, 0.5)), ((1.0, 0.0, 0.25), (1.0, 0.0, 0.25))]
)
def test_configurable_background(background, fill) -> None:
    image = np.broadcast_to(COLOUR, (32, 32, 3)).copy()
    mask = np.zeros((1, 32, 32), dtype=bool)
    mask[0, 8:24, 8:16] = True
    crop = _rgb(_crops(image, masks_to_boxes(mask), mask, background=background))[0]
    np.testing.assert_allclose(crop[:, 4:12], np.broadcast_to(COLOUR / 255.0, (16, 8, 3)), atol=1e-5)
    np.testing.assert_allclose(crop[:, :4], np.broadcast_to(fill, (16, 4, 3)), atol=1e-6)


def test_keep_background_pads_outside_the_image_only() -> None:
    image = np.broadcast_to(COLOUR, (32, 32, 3)).copy()
    mask = np.zeros((1, 32, 32), dtype=bool)
    mask[0, 0:4, 0:8] = True  # wide box at the top: its square frame (0, -2, 8, 6) leaves the image
    crop = _rgb(
        _crops(image, masks_to_boxes(mask), mask, background=None, spec=ClipInput(8, SPEC.mean, SPEC.std))
    )
    np.testing.assert_allclose(crop[0, :2], np.broadcast_to(MEAN, (2, 8, 3)), atol=1e-6)
    np.testing.assert_allclose(crop[0, 2:], np.broadcast_to(COLOUR / 255.0, (6, 8, 3)), atol=1e-5)


def test_box_crops_neutralise_outside_the_box() -> None:
    image = np.broadcast_to(COLOUR, (32, 32, 3)).copy()
    crop = _rgb(_crops(image, [[8, 8, 16, 24]]))[0]
    np.testing.assert_allclose(crop[:, 4:12], np.broadcast_to(COLOUR / 255.0, (16, 8, 3)), atol=1e-5)
    np.testing.assert_allclose(crop[:, :4], np.broadcast_to(MEAN, (16, 4, 3)), atol=1e-6)


def test_tiny_masks_fill_the_crop_and_stay_finite() -> None:
    image = np.zeros((20, 20, 3), dtype=np.uint8)
    image[19, 19] = COLOUR
    masks = np.zeros((1, 20, 20), dtype=bool)
    masks[0, 19, 19] = True  # a single pixel in the corner
    boxes = expand_boxes(masks_to_boxes(masks), 0.1, 20, 20)
    np.testing.assert_allclose(boxes, [[18.9, 18.9, 20, 20]], atol=1e-5)
    crops = _crops(image, boxes, masks)
    assert crops.shape == (1, 3, 16, 16) and torch.isfinite(crops).all()
    rgb = _rgb(crops)[0]
    np.testing.assert_allclose(rgb[15, 15], COLOUR / 255.0, atol=1e-5)
    # Bilinear upsampling blends the black neighbours in within half a source pixel of the edge only.
    np.testing.assert_allclose(rgb[8:, 8:], np.broadcast_to(COLOUR / 255.0, (8, 8, 3)), atol=0.05)
    np.testing.assert_allclose(rgb[:1], np.broadcast_to(MEAN, (1, 16, 3)), atol=1e-6)  # above the mask


def test_large_boxes_are_area_averaged_not_aliased() -> None:
    image = np.zeros((64, 64, 3), dtype=np.uint8)
    image[::2, ::2] = image[1::2, 1::2] = 255  # one-pixel checkerboard
    crop = _rgb(_crops(image, [[0, 0, 64, 64]]))[0]
    np.testing.assert_allclose(crop, 0.5, atol=1e-5)


def test_no_boxes_give_an_empty_batch() -> None:
    image = np.zeros((8, 8, 3), dtype=np.uint8)
    masks = np.zeros((0, 8, 8), dtype=bool)
    assert _crops(image, np.zeros((0, 4)), masks).shape == (0, 3, 16, 16)


def test_clip_input_from_open_clip_transform_and_config() -> None:
    transform = open_clip.image_transform(48, is_train=False)
    spec = ClipInput.from_transform(transform)
    assert spec == ClipInput((48, 48), open_clip.OPENAI_DATASET_MEAN, open_clip.OPENAI_DATASET_STD)
    assert ClipInput.from_config({"size": 48, "mean": spec.mean, "std": spec.std}) == spec
    with pytest.raises(ValueError, match="lacks"):
        ClipInput.from_config({"size": 48})
    with pytest.raises(ValueError, match="cannot read"):
        ClipInput.from_transform(lambda x: x)
    with pytest.raises(ValueError, match="std must be positive"):
        ClipInput(8, (0, 0, 0), (1, 0, 1))


@pytest.mark.parametrize("bad", ["black", (0.1, 0.2), (0, 0, 255)])
def test_bad_backgrounds_are_rejected(bad) -> None:
    with pytest.raises(ValueError, match="background"):
        background_colour(bad, SPEC)
