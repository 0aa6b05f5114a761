"""Box prompts for object-aware "segment everything" (MobileSAMv2 style).

Instead of a dense point grid, one box per object (from the caller or from a detector) prompts SAM once.
This module only turns what the caller gives into a capped (K, 4) array of prompt boxes; decoding and
filtering are :meth:`grounded_sam.sam.everything.MaskGenerator.generate_from_boxes`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeAlias

import numpy as np

BoxSource: TypeAlias = "np.ndarray | Sequence[Sequence[float]] | Any | None"
"""(N, 4) XYXY pixel boxes, a ``Detections`` (anything with ``boxes`` and ``scores``), or None."""

DetectorLike: TypeAlias = "Any | Callable[[np.ndarray], Any]"
"""A ``Detector`` (``detect(image, phrases)``) or a callable ``image → boxes or Detections``."""


def prompt_boxes(
    image: np.ndarray,
    boxes: BoxSource,
    detector: DetectorLike | None,
    phrases: Sequence[str],
    max_boxes: int,
) -> np.ndarray:
    """The (K, 4) float64 XYXY prompt boxes, clipped to the image, K ≤ ``max_boxes``.

    Args:
        image: (H, W, 3) uint8 RGB.
        boxes: explicit prompts: (N, 4) XYXY pixels in priority order, or detections (their best
            scores are kept first). Takes precedence over ``detector``.
        detector: used when ``boxes`` is None: a ``Detector`` is asked for ``phrases``; any other
            callable is called with the image.
        phrases: what the detector looks for (e.g. ``("object",)`` for generic proposals).
        max_boxes: cap on the number of prompts.

    Raises:
        ValueError: neither boxes nor detector, or boxes that are not (N, 4) finite numbers.
        TypeError: a detector that is neither a ``Detector`` nor callable.
    """
    if boxes is None:
        if detector is None:
            raise ValueError("give prompt boxes, or a detector to find them (boxes=... or detector=...)")
        boxes = _detect(image, detector, phrases)
    array, scores = _unpack(boxes)
    if scores is not None:
        array = array[np.argsort(-scores, kind="stable")]
    height, width = image.shape[:2]
    return np.clip(array[:max_boxes], 0.0, [width, height, width, height])


def _detect(image: np.ndarray, detector: DetectorLike, phrases: Sequence[str]) -> Any:
    detect = getattr(detector, "detect", None)
    if callable(detect):
        return detect(image, list(phrases))
    if callable(detector):
        return detector(image)
    raise TypeError(
        f"detector must have a detect(image, phrases) method or be callable, got {type(detector).__name__}"
    )


def _unpack(boxes: Any) -> tuple[np.ndarray, np.ndarray | None]:
    """Boxes (N, 4) float64 and their scores (N,) if the source carries any."""
    scores = None
    if hasattr(boxes, "boxes") and hasattr(boxes, "scores"):
        scores = np.asarray(boxes.scores, dtype=np.float64).reshape(-1)
        boxes = boxes.boxes
    try:
        array = np.asarray(boxes, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise ValueError(f"prompt boxes must be an (N, 4) array of XYXY pixels: {e}") from e
    if array.size == 0:
        array = array.reshape(0, 4)
    if array.ndim != 2 or array.shape[1] != 4 or not np.isfinite(array).all():
        raise ValueError(
            f"prompt boxes must be an (N, 4) array of finite XYXY pixels, got shape {array.shape}"
        )
    if scores is not None and len(scores) != len(array):
        raise ValueError(f"got {len(array)} boxes but {len(scores)} scores")
    return array, scores
