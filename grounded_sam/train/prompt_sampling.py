"""Prompts sampled from ground truth, as SAM is trained: noisy boxes, foreground points, correction clicks.

Coordinates are XY in pixels of the mask grid: a point (x, y) names the pixel in column x, row y (the
prompt encoder moves it to the pixel centre); boxes are XYXY with exclusive x2 / y2, like the scenes'.
Every function draws from the ``numpy.random.Generator`` it is given and from nothing else.
"""

from __future__ import annotations

import numpy as np

PAD_LABEL = -1
"""Label of a "no point" entry (the prompt encoder ignores its position)."""


def jitter_boxes(
    boxes: np.ndarray,
    rng: np.random.Generator,
    image_size: tuple[int, int],
    noise: float = 0.1,
    max_shift: float = 20.0,
) -> np.ndarray:
    """Move each box edge by Gaussian noise, as a detector's boxes would be off.

    Args:
        boxes: (N, 4) XYXY, x2 / y2 exclusive.
        rng: the random source.
        image_size: (H, W); the noisy boxes are clipped to it.
        noise: standard deviation of each edge's shift as a fraction of the box side along its axis.
        max_shift: cap on each edge's shift in pixels.

    Returns:
        (N, 4) float32 XYXY inside the image, each side at least one pixel long.
    """
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    height, width = image_size
    sides = np.concatenate([boxes[:, 2:] - boxes[:, :2]] * 2, axis=1)  # (w, h, w, h)
    shift = np.clip(rng.normal(size=boxes.shape) * noise * sides, -max_shift, max_shift)
    noisy = boxes + shift
    limits = np.array([width, height, width, height], dtype=np.float64)
    noisy = np.clip(noisy, 0, limits)
    x1 = np.minimum(noisy[:, 0], width - 1)
    y1 = np.minimum(noisy[:, 1], height - 1)
    x2 = np.clip(noisy[:, 2], x1 + 1, width)
    y2 = np.clip(noisy[:, 3], y1 + 1, height)
    return np.stack([x1, y1, x2, y2], axis=1).astype(np.float32)


def sample_points_in(regions: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """One uniformly drawn pixel of each region.

    Args:
        regions: (N, H, W) bool.

    Returns:
        coords (N, 2) float32 XY and ``found`` (N,) bool; empty regions give (0, 0) and ``False``.
    """
    count, _, width = regions.shape
    coords = np.zeros((count, 2), dtype=np.float32)
    found = np.zeros(count, dtype=bool)
    for i in range(count):
        pixels = np.flatnonzero(regions[i])
        if len(pixels):
            y, x = divmod(int(pixels[rng.integers(len(pixels))]), width)
            coords[i] = (x, y)
            found[i] = True
    return coords, found


def sample_foreground_points(masks: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """One positive click per mask, uniform over its pixels.

    Args:
        masks: (N, H, W) bool, none of them empty.

    Returns:
        coords (N, 1, 2) float32 XY and labels (N, 1) int64 (all 1).

    Raises:
        ValueError: a mask is empty (there is nowhere to click).
    """
    coords, found = sample_points_in(masks, rng)
    if not found.all():
        raise ValueError(
            f"masks {np.flatnonzero(~found).tolist()} are empty: cannot sample a click inside them"
        )
    return coords[:, None], np.ones((len(masks), 1), dtype=np.int64)


def correction_clicks(
    predicted: np.ndarray, targets: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """One corrective click per mask, uniform over the error region of the previous prediction.

    A click in a missed pixel (false negative) is positive, one in a wrongly included pixel (false
    positive) is negative; a perfect prediction gets a padding point (label ``PAD_LABEL``).

    Args:
        predicted: (N, H, W) bool previous masks; targets: (N, H, W) bool ground truth.

    Returns:
        coords (N, 1, 2) float32 XY and labels (N, 1) int64 in {1, 0, -1}.
    """
    if predicted.shape != targets.shape:
        raise ValueError(f"predicted {predicted.shape} and targets {targets.shape} must have the same shape")
    coords, found = sample_points_in(predicted ^ targets, rng)
    x, y = coords[:, 0].astype(np.intp), coords[:, 1].astype(np.intp)
    positive = targets[np.arange(len(targets)), y, x]
    labels = np.where(found, positive.astype(np.int64), PAD_LABEL)
    return coords[:, None], labels[:, None]
