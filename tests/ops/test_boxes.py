"""grounded_sam.ops.boxes: tight boxes (far edge exclusive), IoU, NMS, XYWH."""

from __future__ import annotations

import numpy as np
import torch
from segment_anything.utils import amg
from torchvision.ops import batched_nms

from grounded_sam.ops.boxes import box_ious, masks_to_boxes, nms, xyxy_to_xywh


def test_mask_boxes_are_tight_with_exclusive_far_edge() -> None:
    masks = np.zeros((4, 10, 12), dtype=bool)
    masks[0, 2:5, 3:9] = True
    masks[1, 9, 11] = True  # the bottom-right pixel
    masks[2, 0, 0] = masks[2, 7, 4] = True  # two separate pixels
    boxes = masks_to_boxes(masks)
    assert boxes.dtype == np.float32
    np.testing.assert_array_equal(boxes, [[3, 2, 9, 5], [11, 9, 12, 10], [0, 0, 5, 8], [0, 0, 0, 0]])
    assert masks_to_boxes(np.zeros((0, 10, 12), dtype=bool)).shape == (0, 4)


def test_masks_to_boxes_are_the_reference_boxes_widened_to_the_far_pixel_edge() -> None:
    rng = np.random.default_rng(0)
    masks = rng.random((12, 37, 53)) < 0.002
    masks[0] = False
    masks[2, 0, 0] = masks[2, 36, 52] = True
    ours = masks_to_boxes(masks)
    inclusive = amg.batched_mask_to_box(torch.from_numpy(masks)).numpy()  # segment-anything's convention
    filled = masks.any(axis=(1, 2))
    np.testing.assert_array_equal(ours[filled], inclusive[filled] + [0, 0, 1, 1])
    np.testing.assert_array_equal(ours[0], [0, 0, 0, 0])
    np.testing.assert_array_equal(ours[2], [0, 0, 53, 37])


def test_box_ious_match_hand_values_and_empty_boxes_give_zero() -> None:
    ious = box_ious(np.array([[0, 0, 10, 10], [3, 3, 3, 3]]), np.array([[5, 0, 15, 10], [0, 0, 10, 10]]))
    np.testing.assert_allclose(ious, [[1 / 3, 1.0], [0.0, 0.0]])
    assert box_ious(np.zeros((0, 4)), np.zeros((2, 4))).shape == (0, 2)


def test_xyxy_to_xywh() -> None:
    np.testing.assert_array_equal(xyxy_to_xywh(np.array([[2, 3, 10, 7]])), [[2, 3, 8, 4]])


def test_nms_matches_torchvision_and_handles_empty() -> None:
    rng = np.random.default_rng(5)
    corners = rng.integers(0, 100, size=(60, 2, 2))
    boxes = np.concatenate([corners.min(1), corners.max(1) + 1], axis=1)
    scores = rng.random(60).astype(np.float32)
    expected = batched_nms(torch.from_numpy(boxes).float(), torch.from_numpy(scores), torch.zeros(60), 0.5)
    np.testing.assert_array_equal(nms(boxes, scores, 0.5), expected.numpy())
    assert nms(np.zeros((0, 4)), np.zeros(0, np.float32), 0.5).shape == (0,)
