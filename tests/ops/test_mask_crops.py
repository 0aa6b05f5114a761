"""grounded_sam.ops.mask_crops and compact Results: every operation gives what the dense stack gives."""

from __future__ import annotations

import json

import numpy as np
import pytest

from grounded_sam.export import result_to_dict
from grounded_sam.ops.boxes import masks_to_boxes
from grounded_sam.ops.mask_crops import MaskCrops
from grounded_sam.ops.rle import masks_to_rles
from grounded_sam.result import Result

H, W = 23, 31


def random_masks(seed: int, n: int = 12) -> np.ndarray:
    """Blobs anywhere (touching every border, wrapping runs from one column's bottom to the next one's
    top), speckle, and empty masks."""
    rng = np.random.default_rng(seed)
    masks = np.zeros((n, H, W), dtype=bool)
    for mask in masks[: n - 2]:
        y0, x0 = rng.integers(0, H), rng.integers(0, W)
        mask[y0 : y0 + rng.integers(1, H), x0 : x0 + rng.integers(1, W)] = True
        mask ^= rng.random((H, W)) < 0.1
    masks[n - 2, :, 3:5] = True  # full columns: one run across columns
    return masks  # the last mask stays empty


def compact_and_dense(seed: int) -> tuple[Result, Result]:
    masks = random_masks(seed)
    n = len(masks)
    rng = np.random.default_rng(seed + 100)
    boxes = np.sort(rng.uniform(0, 20, (n, 4)), axis=1).astype(np.float32)
    fields = (boxes, [f"c{i % 3}" for i in range(n)], rng.random(n), rng.random(n), (H, W))
    return Result(MaskCrops.from_dense(masks), *fields), Result(masks, *fields)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_crops_round_trip_and_give_the_dense_stack_rles_boxes_and_areas(seed: int) -> None:
    masks = random_masks(seed)
    crops = MaskCrops.from_dense(masks)
    np.testing.assert_array_equal(crops.dense(), masks)
    assert crops.nbytes() < masks.nbytes
    np.testing.assert_array_equal(crops.areas(), masks.sum(axis=(1, 2)))
    np.testing.assert_array_equal(crops.boxes(), masks_to_boxes(masks))
    compact, dense = compact_and_dense(seed)
    assert compact.rles() == masks_to_rles(masks) == dense.rles()
    assert compact.compact and not dense.compact


def test_crops_of_a_window_sit_at_its_offset() -> None:
    local = np.zeros((2, 8, 8), dtype=bool)
    local[0, 2:4, 5:8] = True
    crops = MaskCrops.from_windows(local, (10, 4, 18, 12), (20, 30))
    assert crops.crops[0].shape == (2, 3) and crops.offsets[0].tolist() == [6, 15]
    assert crops.crops[1].shape == (0, 0) and crops.areas().tolist() == [6, 0]
    assert crops.mask(0)[6:8, 15:18].all() and crops.mask(0).sum() == 6
    with pytest.raises(ValueError, match="leaves the 20x30 image"):
        MaskCrops((np.ones((3, 3), bool),), np.array([[18, 0]]), (20, 30))


@pytest.mark.parametrize("seed", [0, 3])
def test_a_compact_result_behaves_as_the_dense_one_without_materialising(seed: int) -> None:
    compact, dense = compact_and_dense(seed)
    np.testing.assert_array_equal(compact.areas, dense.areas)
    np.testing.assert_array_equal(compact.mask_boxes(), dense.mask_boxes())
    np.testing.assert_array_equal(compact.instance_map(), dense.instance_map())
    pick = compact.filter(min_area=20)[::-1]
    assert pick.compact and pick.labels == dense.filter(min_area=20)[::-1].labels
    np.testing.assert_array_equal(pick.mask(0), dense.filter(min_area=20)[::-1].mask(0))
    both = Result.concat([compact, compact[:2]])
    assert both.compact and len(both) == len(compact) + 2
    renamed = compact.with_labels(["x"] * len(compact))
    assert renamed.compact and renamed.labels[0] == "x"
    for a, b in zip(compact, dense, strict=True):
        np.testing.assert_array_equal(a.mask, b.mask)
    assert json.dumps(result_to_dict(compact)) == json.dumps(result_to_dict(dense))
    assert compact.to_coco() == dense.to_coco() and compact.to_yolo() == dense.to_yolo()
    assert compact.compact  # nothing above built the (N, H, W) stack
    np.testing.assert_array_equal(compact.masks, dense.masks)
    assert not compact.compact


def test_a_result_refuses_crops_of_another_image_size() -> None:
    crops = MaskCrops.from_dense(np.zeros((1, 5, 6), bool))
    with pytest.raises(ValueError, match="mask crops are of a"):
        Result(crops, np.zeros((1, 4)), ["a"], [0.5], [0.5], (6, 5))
