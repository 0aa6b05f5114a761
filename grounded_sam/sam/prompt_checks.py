"""Checking and normalising user prompts (points, boxes, mask inputs) before they reach the network."""

from __future__ import annotations

import numpy as np

_VALID_LABELS = (-1, 0, 1)


def to_box_array(box: np.ndarray | list[float] | list[list[float]]) -> np.ndarray:
    """Any (4,) or (N, 4) XYXY box input as an (N, 4) float64 array; raises ValueError when malformed."""
    array = np.asarray(box, dtype=np.float64)
    if array.ndim == 1 and array.shape[0] == 4:
        array = array[None]
    if array.ndim != 2 or array.shape[1] != 4:
        raise ValueError(f"boxes must have shape (4,) or (N, 4) as XYXY, got shape {array.shape}")
    if not np.isfinite(array).all():
        raise ValueError("boxes contain NaN or infinite coordinates")
    flipped = (array[:, 2] < array[:, 0]) | (array[:, 3] < array[:, 1])
    if flipped.any():
        first = array[np.flatnonzero(flipped)[0]].tolist()
        raise ValueError(
            f"boxes must be XYXY with x2 >= x1 and y2 >= y1; got {first} ({int(flipped.sum())} such boxes)"
        )
    return array


def clip_boxes(boxes: np.ndarray, width: int, height: int) -> np.ndarray:
    """Clip (N, 4) XYXY boxes to the image ``[0, width] x [0, height]``."""
    return np.clip(boxes, 0.0, [width, height, width, height])


def check_points(
    point_coords: np.ndarray | None, point_labels: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray]:
    """Validate points; returns coords (N, P, 2) float64 and labels (N, P) int64.

    Accepts coords (P, 2) with labels (P,), or coords (N, P, 2) with labels (N, P).
    """
    if point_coords is None or point_labels is None:
        raise ValueError("point_coords and point_labels must be given together")
    coords = np.asarray(point_coords, dtype=np.float64)
    labels = np.asarray(point_labels)
    if coords.ndim == 2:
        coords, labels = coords[None], labels[None] if labels.ndim == 1 else labels
    if coords.ndim != 3 or coords.shape[-1] != 2:
        raise ValueError(
            f"point_coords must have shape (P, 2) or (N, P, 2) as XY, got {np.shape(point_coords)}"
        )
    if labels.shape != coords.shape[:2]:
        raise ValueError(
            f"point_labels must have one label per point: expected {coords.shape[:2]}, got {labels.shape}"
        )
    if coords.shape[1] == 0:
        raise ValueError("point_coords holds no points")
    if not np.isfinite(coords).all():
        raise ValueError("point_coords contain NaN or infinite values")
    if not np.isin(labels, _VALID_LABELS).all():
        raise ValueError(
            f"point_labels must be 1 (foreground), 0 (background) or -1 (ignore); got {np.unique(labels)}"
        )
    return coords, labels.astype(np.int64)


def check_mask_input(mask_input: np.ndarray) -> np.ndarray:
    """Validate low-res mask logits; returns (N, 1, h, w) float32 from (1, h, w) or (N, 1, h, w)."""
    array = np.asarray(mask_input, dtype=np.float32)
    if array.ndim == 3:
        array = array[None]
    if array.ndim != 4 or array.shape[1] != 1:
        raise ValueError(f"mask_input must have shape (1, h, w) or (N, 1, h, w), got {np.shape(mask_input)}")
    if not np.isfinite(array).all():
        raise ValueError("mask_input contains NaN or infinite values")
    return array
