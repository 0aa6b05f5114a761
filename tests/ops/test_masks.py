"""Mask helpers: parts of more confident masks of the same class."""

from __future__ import annotations

import numpy as np

from grounded_sam.ops.mask_crops import MaskCrops
from grounded_sam.ops.masks import drop_parts, inside_larger


def test_parts_of_a_more_confident_mask_of_the_same_phrase_are_dropped() -> None:
    masks = np.zeros((5, 32, 32), dtype=bool)
    masks[0, 4:20, 4:20] = True  # an object
    masks[1, 6:12, 6:12] = True  # a part of it, same phrase: dropped
    masks[2, 6:12, 6:12] = True  # the same part named as another phrase: kept
    masks[3, 14:26, 14:26] = True  # another object of the phrase, overlapping 36 of its 144 pixels: kept
    masks[4, 2:22, 2:22] = True  # contains object 0 but is less confident: dropped
    scores = np.array([0.9, 0.8, 0.7, 0.6, 0.5])
    ids = np.array([0, 0, 1, 0, 0])
    assert drop_parts(masks, scores, ids, 0.6).tolist() == [0, 2, 3]
    assert drop_parts(masks, scores, ids, 0.2).tolist() == [0, 2]
    # The most confident mask wins whatever its size.
    assert drop_parts(masks[:2], np.array([0.4, 0.8]), ids[:2], 0.6).tolist() == [1]


def test_masks_mostly_inside_a_larger_one_of_their_class_are_found() -> None:
    masks = np.zeros((4, 20, 20), dtype=bool)
    masks[0, 2:18, 2:18] = True  # a whole
    masks[1, 4:10, 4:10] = True  # a part of it
    masks[2, 4:10, 4:10] = True  # the same pixels of another class
    masks[3, 0:8, 0:8] = True  # 36 of its 64 pixels inside the whole
    ids = np.array([0, 0, 1, 0])
    assert inside_larger(masks, ids, 0.8).tolist() == [False, True, False, False]
    assert inside_larger(masks, ids, 0.5).tolist() == [False, True, False, True]
    assert inside_larger(masks[:1], ids[:1], 0.5).tolist() == [False]
    # The same from masks kept cut to their boxes (tiled results).
    assert inside_larger(MaskCrops.from_dense(masks), ids, 0.5).tolist() == [False, True, False, True]
