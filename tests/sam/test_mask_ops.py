"""Pure segment-everything helpers, checked against segment_anything's utils/amg.py and pycocotools."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from pycocotools import mask as coco_mask
from segment_anything.utils import amg

from grounded_sam.sam.everything import mask_ops
from grounded_sam.sam.everything.candidates import MaskSet
from grounded_sam.sam.everything.mask_ops import CompactMask
from tests.sam.builders import TINY_VIT_SAM, random_sam


def random_masks(count: int, height: int, width: int, seed: int = 0) -> np.ndarray:
    """Blobby random masks (thresholded smooth noise), plus edge cases first: empty, full, corners."""
    rng = np.random.default_rng(seed)
    coarse = rng.normal(size=(count, (height + 7) // 8, (width + 7) // 8))
    masks = np.kron(coarse, np.ones((8, 8)))[:, :height, :width] > 0.6
    masks[5::2] = ~masks[5::2]  # mostly foreground with holes
    masks[0] = False
    masks[1] = True
    masks[2] = False
    masks[2, 0, 0] = masks[2, -1, -1] = True  # first and last pixel
    masks[3] = False
    masks[3, :, 2] = masks[3, :, 3] = True  # full columns: one run across a column boundary
    return masks


@pytest.mark.parametrize("n", [1, 2, 7, 32])
def test_point_grid_matches_reference(n: int) -> None:
    grid = mask_ops.point_grid(n)
    np.testing.assert_array_equal(grid, amg.build_point_grid(n))
    assert grid.shape == (n * n, 2) and grid.min() > 0 and grid.max() < 1


@pytest.mark.parametrize(("n", "layers", "factor"), [(32, 0, 1), (16, 2, 2), (12, 1, 1), (9, 2, 3)])
def test_layer_point_grids_match_reference(n: int, layers: int, factor: int) -> None:
    ours = mask_ops.layer_point_grids(n, layers, factor)
    reference = amg.build_all_layer_point_grids(n, layers, factor)
    assert len(ours) == len(reference) == layers + 1
    for a, b in zip(ours, reference, strict=True):
        np.testing.assert_array_equal(a, b)


def test_point_grid_rejects_zero() -> None:
    with pytest.raises(ValueError):
        mask_ops.point_grid(0)


@pytest.mark.parametrize("size", [(200, 300), (1024, 1024), (480, 640), (77, 33)])
@pytest.mark.parametrize("layers", [0, 1, 2])
def test_crop_boxes_match_reference(size: tuple[int, int], layers: int) -> None:
    boxes, layer_ids = mask_ops.crop_boxes(size, layers, 512 / 1500)
    ref_boxes, ref_layers = amg.generate_crop_boxes(size, layers, 512 / 1500)
    assert [list(b) for b in boxes] == ref_boxes
    assert layer_ids == ref_layers
    assert len(boxes) == sum(4**i for i in range(layers + 1))


def test_mask_box_is_the_references_inclusive_box_and_none_when_empty() -> None:
    masks = random_masks(12, 37, 53)
    reference = amg.batched_mask_to_box(torch.from_numpy(masks)).numpy()
    for mask, expected in zip(masks, reference, strict=True):
        assert mask_ops.mask_box(mask) == (tuple(expected) if mask.any() else None)
    assert mask_ops.mask_box(masks[2]) == (0, 0, 52, 36)


def test_box_near_crop_edge_matches_reference() -> None:
    rng = np.random.default_rng(1)
    corners = rng.integers(0, 150, size=(200, 2, 2))
    boxes = np.concatenate([corners.min(1), corners.max(1)], axis=1)
    for crop in ([0, 0, 300, 200], [100, 50, 260, 200], [30, 0, 180, 150]):
        ours = mask_ops.box_near_crop_edge(boxes, tuple(crop), (0, 0, 300, 200))
        reference = amg.is_box_near_crop_edge(torch.from_numpy(boxes), crop, [0, 0, 300, 200]).numpy()
        np.testing.assert_array_equal(ours, reference)
        assert ours.any() or crop == [0, 0, 300, 200]


def test_rle_counts_match_reference_and_pycocotools() -> None:
    masks = random_masks(16, 29, 41, seed=2)
    reference = amg.mask_to_rle_pytorch(torch.from_numpy(masks))
    for mask, ref in zip(masks, reference, strict=True):
        counts = mask_ops.rle_counts(mask)
        assert counts.tolist() == ref["counts"]
        assert counts.sum() == mask.size
        decoded = coco_mask.decode(
            coco_mask.frPyObjects({"size": list(mask.shape), "counts": counts.tolist()}, 29, 41)
        )
        np.testing.assert_array_equal(decoded.astype(bool), mask)
        np.testing.assert_array_equal(mask_ops.counts_to_mask(counts, mask.shape), mask)
    assert mask_ops.rle_counts(masks[1]).tolist() == [0, masks[1].size]  # full mask: no zeros first
    assert mask_ops.rle_counts(masks[0]).tolist() == [masks[0].size]


def test_counts_to_mask_rejects_wrong_total() -> None:
    with pytest.raises(ValueError, match="add up"):
        mask_ops.counts_to_mask([3, 4], (3, 3))


def test_compact_mask_round_trip_and_shift() -> None:
    masks = random_masks(10, 30, 40, seed=3)
    for mask in masks:
        compact = CompactMask.from_mask(mask)
        np.testing.assert_array_equal(compact.to_mask(), mask)
        assert compact.area == mask.sum()
        box = mask_ops.mask_box(mask)
        assert compact.box == (box if box is not None else (0, 0, 0, 0))
        assert compact.rle_counts().tolist() == mask_ops.rle_counts(mask).tolist()
        moved = compact.shifted(5, 7, (50, 60))
        frame = np.zeros((50, 60), dtype=bool)
        frame[7:37, 5:45] = mask
        np.testing.assert_array_equal(moved.to_mask(), frame)
        assert moved.rle_counts().tolist() == mask_ops.rle_counts(frame).tolist()
    with pytest.raises(ValueError, match="leaves"):
        CompactMask.from_mask(masks[1]).shifted(30, 0, (30, 40))


@pytest.mark.parametrize("mode", ["holes", "islands"])
def test_remove_small_regions_matches_reference(mode: str) -> None:
    masks = random_masks(12, 48, 64, seed=4)
    changed_any = False
    for mask in masks:
        ours, changed = mask_ops.remove_small_regions(mask, 70, mode)
        reference, ref_changed = amg.remove_small_regions(mask, 70, mode)
        np.testing.assert_array_equal(ours, reference)
        assert changed == ref_changed
        changed_any |= changed
    assert changed_any
    tiny = np.zeros((20, 20), dtype=bool)
    tiny[2:4, 2:4] = tiny[10:13, 10:13] = True  # every island small: the largest is kept
    kept, _ = mask_ops.remove_small_regions(tiny, 100, "islands")
    np.testing.assert_array_equal(kept, amg.remove_small_regions(tiny, 100, "islands")[0])
    assert kept.sum() == 9
    with pytest.raises(ValueError):
        mask_ops.remove_small_regions(tiny, 10, "blobs")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("input_size", "original_size"), [((171, 256), (200, 300)), ((256, 256), (256, 256))]
)
def test_upsample_logits_equals_postprocess_masks(input_size, original_size) -> None:
    model = random_sam(TINY_VIT_SAM)
    low = torch.randn(5, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    expected = model.postprocess_masks(low, input_size, original_size)
    ours = mask_ops.upsample_logits(low, model.image_size, input_size, original_size)
    assert torch.equal(ours, expected)  # bit for bit, also when the second resize is skipped
    # Chunking the batch does not change a bit either.
    assert torch.equal(mask_ops.upsample_logits(low[2:3], 256, input_size, original_size), expected[2:3])


def test_mask_set_take_concat_uncrop() -> None:
    masks = random_masks(4, 10, 12, seed=6)
    compact = tuple(CompactMask.from_mask(m) for m in masks)
    found = MaskSet(
        compact,
        np.array([m.box for m in compact], dtype=np.int64),
        np.arange(4, dtype=np.float32),
        np.ones(4, np.float32),
        np.arange(8, dtype=np.float64).reshape(4, 2),
        np.tile([3, 4, 15, 14], (4, 1)),
    )
    both = MaskSet.concat([found, found.take(np.array([2, 0]))])
    assert len(both) == 6 and both.iou.tolist() == [0, 1, 2, 3, 2, 0]
    moved = found.uncropped((3, 4, 15, 14), (20, 30))
    np.testing.assert_array_equal(moved.prompts, found.prompts + np.array([3, 4]))
    for i in (2, 3):  # non-empty masks: their box moves with them
        np.testing.assert_array_equal(moved.boxes[i], found.boxes[i] + np.array([3, 4, 3, 4]))
        np.testing.assert_array_equal(moved.masks[i].to_mask()[4:14, 3:15], masks[i])
    assert len(MaskSet.concat([])) == 0 and MaskSet.empty(4).prompts.shape == (0, 4)
