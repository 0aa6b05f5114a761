"""grounded_sam.ops.rle: COCO RLE through pycocotools."""

from __future__ import annotations

import numpy as np
from pycocotools import mask as coco_mask

from grounded_sam.ops.rle import counts_to_rle, mask_to_rle, masks_to_rles, rle_to_mask, rles_to_masks


def test_rle_helpers_handle_empty_and_bytes() -> None:
    assert masks_to_rles(np.zeros((0, 4, 5), bool)) == []
    assert rles_to_masks([], 4, 5).shape == (0, 4, 5)
    masks = np.zeros((2, 4, 5), bool)
    masks[0, 1:3, 2:] = True
    rles = masks_to_rles(masks)
    np.testing.assert_array_equal(rles_to_masks(rles, 4, 5), masks)
    as_bytes = [{"size": r["size"], "counts": r["counts"].encode()} for r in rles]
    np.testing.assert_array_equal(rles_to_masks(as_bytes, 4, 5), masks)


def test_counts_to_rle_matches_pycocotools_encoding_of_the_mask() -> None:
    mask = np.zeros((5, 7), bool)
    mask[1:4, 2:6] = True
    flat = mask.ravel(order="F")
    counts = np.diff([0, *(np.flatnonzero(np.diff(flat)) + 1), flat.size])  # runs, zeros first
    if flat[0]:
        counts = np.concatenate([[0], counts])
    assert counts.sum() == mask.size
    assert counts_to_rle(counts, mask.shape) == mask_to_rle(mask)
    encoded = coco_mask.encode(np.asfortranarray(mask.astype(np.uint8)))
    assert mask_to_rle(mask)["counts"] == encoded["counts"].decode("ascii")
    np.testing.assert_array_equal(rle_to_mask({"size": [5, 7], "counts": counts.tolist()}), mask)
