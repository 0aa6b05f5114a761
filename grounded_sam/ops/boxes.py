"""Boxes: tight boxes of masks, pairwise IoU, non-maximum suppression, XYXY -> XYWH.

Boxes are (N, 4) XYXY pixels with the far edge exclusive (see :mod:`grounded_sam.ops`).
"""

from __future__ import annotations

import numpy as np
import torch
from torchvision.ops import batched_nms


def masks_to_boxes(masks: np.ndarray) -> np.ndarray:
    """(N, H, W) bool -> (N, 4) float32 XYXY tight boxes, far edge exclusive; empty masks give zeros."""
    masks = np.asarray(masks, dtype=bool)
    count, height, width = masks.shape
    rows, cols = masks.any(axis=2), masks.any(axis=1)
    boxes = np.zeros((count, 4), dtype=np.float32)
    filled = rows.any(axis=1)
    boxes[filled, 0] = cols[filled].argmax(axis=1)
    boxes[filled, 1] = rows[filled].argmax(axis=1)
    boxes[filled, 2] = width - cols[filled, ::-1].argmax(axis=1)
    boxes[filled, 3] = height - rows[filled, ::-1].argmax(axis=1)
    return boxes


def box_ious(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise IoU of XYXY boxes a (N, 4) and b (M, 4) -> (N, M) float64; 0 where both are empty."""
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    top_left = np.maximum(a[:, None, :2], b[None, :, :2])
    bottom_right = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(bottom_right - top_left, 0, None), axis=-1)
    area_a = np.prod(a[:, 2:] - a[:, :2], axis=1)
    area_b = np.prod(b[:, 2:] - b[:, :2], axis=1)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def nms(boxes: np.ndarray, scores: np.ndarray | torch.Tensor, iou_threshold: float) -> np.ndarray:
    """Indices of the (N, 4) XYXY boxes kept by non-maximum suppression, best score first.

    Runs ``torchvision.ops.batched_nms`` with a single category on float32 boxes, so equal inputs give
    the same order as segment-anything's generator (ties included).
    """
    if len(boxes) == 0:
        return np.zeros(0, dtype=np.int64)
    boxes_t = torch.as_tensor(np.asarray(boxes)).float()
    keep = batched_nms(boxes_t, torch.as_tensor(scores), torch.zeros(len(boxes_t)), iou_threshold)
    return keep.numpy()


def xyxy_to_xywh(boxes: np.ndarray) -> np.ndarray:
    """(..., 4) XYXY -> (..., 4) XYWH with width = x1 - x0 and height = y1 - y0."""
    boxes = np.asarray(boxes)
    return np.concatenate([boxes[..., :2], boxes[..., 2:] - boxes[..., :2]], axis=-1)
