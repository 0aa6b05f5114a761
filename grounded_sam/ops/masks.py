"""Masks: IoU of paired masks; masks that are parts of others of the same class."""

from __future__ import annotations

import numpy as np
import torch

from grounded_sam.ops.mask_crops import MaskCrops


def mask_ious(predicted: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """IoU of paired masks: predicted (N, H, W), targets (N, H, W) bool -> (N,) float64; empty∪empty -> 1."""
    inter = (predicted & targets).reshape(len(targets), -1).sum(1)
    union = (predicted | targets).reshape(len(targets), -1).sum(1)
    return np.where(union > 0, inter / np.maximum(union, 1), 1.0)


def drop_parts(masks: np.ndarray, scores: np.ndarray, ids: np.ndarray, containment: float) -> np.ndarray:
    """Indices (ascending) of the (N, H, W) bool ``masks`` that are not parts of a more confident one.

    From the highest of the (N,) ``scores`` down, a mask is dropped when at least ``containment`` of the
    smaller of it and an already kept mask with the same of the (N,) ``ids`` lies in both.
    """
    flat = torch.from_numpy(np.ascontiguousarray(masks).reshape(len(masks), -1)).float()
    areas = flat.sum(dim=1).numpy()
    shared = (flat @ flat.T).numpy() / np.maximum(np.minimum.outer(areas, areas), 1)
    clash = (shared >= containment) & (ids[:, None] == ids[None, :])
    kept: list[int] = []
    for i in np.argsort(-scores, kind="stable"):
        if not clash[i, kept].any():
            kept.append(int(i))
    return np.array(sorted(kept), dtype=np.int64)


def inside_larger(masks: np.ndarray | MaskCrops, ids: np.ndarray, fraction: float) -> np.ndarray:
    """(N,) bool: which of the N masks ((N, H, W) bool, or :class:`MaskCrops`) have at least ``fraction``
    of their area inside a larger mask with the same of the (N,) ``ids`` (parts of it, whatever the
    scores)."""
    if isinstance(masks, MaskCrops):
        areas, shared = masks.areas(), _shared_pixels(masks)
    else:
        flat = torch.from_numpy(np.ascontiguousarray(masks).reshape(len(masks), -1)).float()
        areas, shared = flat.sum(dim=1).numpy(), (flat @ flat.T).numpy()
    inside = shared >= fraction * np.maximum(areas[:, None], 1)
    return (inside & (areas[None, :] > areas[:, None]) & (ids[:, None] == ids[None, :])).any(axis=1)


def _shared_pixels(masks: MaskCrops) -> np.ndarray:
    """(N, N) int64: the pixels each pair of masks has in common, from the crops' overlapping windows."""
    count = len(masks)
    shared = np.diag(masks.areas()).astype(np.int64)
    ends = masks.offsets + np.array([crop.shape for crop in masks.crops], dtype=np.int64).reshape(-1, 2)
    for i in range(count):
        for j in range(i + 1, count):
            start, stop = np.maximum(masks.offsets[i], masks.offsets[j]), np.minimum(ends[i], ends[j])
            if (stop > start).all():
                a = _window(masks, i, start, stop)
                shared[i, j] = shared[j, i] = np.count_nonzero(a & _window(masks, j, start, stop))
    return shared


def _window(masks: MaskCrops, i: int, start: np.ndarray, stop: np.ndarray) -> np.ndarray:
    """The part of crop ``i`` between the (top, left) ``start`` and ``stop`` image pixels."""
    (top, left), crop = masks.offsets[i], masks.crops[i]
    return crop[start[0] - top : stop[0] - top, start[1] - left : stop[1] - left]
