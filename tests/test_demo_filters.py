"""The demo's proposal rules: boundary contrast and parts of wholes."""

from __future__ import annotations

import numpy as np

from grounded_sam.demo_filters import boundary_contrast, parts_of_wholes, word_matrices


def test_boundary_contrast_is_high_for_an_object_and_low_for_a_patch_of_a_gradient() -> None:
    ramp = np.linspace(40, 200, 64, dtype=np.float32)
    image = np.repeat(np.repeat(ramp[None, :, None], 64, axis=0), 3, axis=2).astype(np.uint8)
    image[20:40, 20:40] = (200, 30, 30)  # a red square on a grey ramp
    masks = np.zeros((3, 64, 64), dtype=bool)
    masks[0, 20:40, 20:40] = True  # the square
    masks[1, 44:60, 4:60] = True  # a patch of the ramp
    masks[2] = True  # the whole image: no outside rim
    contrast = boundary_contrast(image, masks)
    assert contrast.shape == (3,) and contrast.dtype == np.float32
    assert contrast[0] > 20 and contrast[1] < 3 and contrast[2] == 0
    assert boundary_contrast(image, masks[:0]).shape == (0,)


def test_word_matrices_read_colours_and_shapes_from_class_names() -> None:
    colours, shapes = word_matrices(["red circle", "blue", "triangle", "background", "shape"])
    assert colours.sum(axis=1).tolist() == [1, 1, 0, 0, 0]
    assert shapes.sum(axis=1).tolist() == [1, 0, 1, 0, 0]


def test_a_part_of_a_confident_whole_of_its_colour_is_found() -> None:
    classes = ["blue star", "blue triangle", "red triangle", "background"]
    masks = np.zeros((5, 40, 40), dtype=bool)
    masks[0, 5:35, 5:35] = True  # the star
    masks[1, 5:15, 15:25] = True  # an arm of it, named a blue triangle: a part
    masks[2, 20:30, 20:30] = True  # a red triangle on it: another object
    masks[3, 25:35, 5:15] = True  # a piece named a blue star like the whole: a part too
    masks[4, 0:12, 12:28] = True  # a blue triangle only half inside the star: not a part
    probabilities = np.array(
        [
            [0.9, 0.05, 0.0, 0.05],
            [0.1, 0.85, 0.0, 0.05],
            [0.0, 0.1, 0.85, 0.05],
            [0.8, 0.1, 0.0, 0.1],
            [0.1, 0.85, 0.0, 0.05],
        ],
        dtype=np.float32,
    )
    assert parts_of_wholes(masks, probabilities, classes).tolist() == [False, True, False, True, False]
    # A whole CLIP is not sure of does not make parts.
    unsure = probabilities.copy()
    unsure[0] = [0.7, 0.05, 0.0, 0.25]
    assert not parts_of_wholes(masks, unsure, classes).any()
    assert parts_of_wholes(masks[:1], probabilities[:1], classes).tolist() == [False]
