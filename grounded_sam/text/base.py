"""The text-stage protocols: a detector (phrases → boxes), a text segmenter (phrases → masks, e.g. SAM 3)
and a labeler (masks → class names).

The text stages know nothing about SAM; :mod:`grounded_sam.pipeline` joins them to it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np

NO_LABEL = "no label"


def _as_array(values: object, dtype: type, shape_tail: tuple[int, ...], name: str, count: int) -> np.ndarray:
    array = np.asarray(values, dtype=dtype)
    if count == 0 and array.size == 0:
        array = array.reshape(0, *shape_tail)
    if array.shape != (count, *shape_tail):
        raise ValueError(f"{name} must have shape {(count, *shape_tail)}, got {array.shape}")
    return array


@dataclass(frozen=True)
class Detections:
    """Boxes found for a list of phrases in one image.

    Attributes:
        boxes: (N, 4) float32 XYXY in input-image pixels.
        scores: (N,) float32 detector confidence.
        phrase_ids: (N,) int64 index of each box's phrase in ``phrases``.
        phrases: the user's phrases, exactly as parsed (every box maps to exactly one of them).
    """

    boxes: np.ndarray
    scores: np.ndarray
    phrase_ids: np.ndarray
    phrases: tuple[str, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        count = len(np.asarray(self.scores).reshape(-1))
        object.__setattr__(self, "boxes", _as_array(self.boxes, np.float32, (4,), "boxes", count))
        object.__setattr__(self, "scores", _as_array(self.scores, np.float32, (), "scores", count))
        object.__setattr__(self, "phrase_ids", _as_array(self.phrase_ids, np.int64, (), "phrase_ids", count))
        object.__setattr__(self, "phrases", tuple(self.phrases))
        if count and (self.phrase_ids.min() < 0 or self.phrase_ids.max() >= len(self.phrases)):
            raise ValueError(f"phrase_ids must index the {len(self.phrases)} phrases, got {self.phrase_ids}")

    def __len__(self) -> int:
        return int(self.scores.shape[0])

    @property
    def labels(self) -> list[str]:
        """The phrase of each box."""
        return [self.phrases[i] for i in self.phrase_ids]

    @classmethod
    def empty(cls, phrases: Sequence[str] = ()) -> Detections:
        return cls(np.zeros((0, 4)), np.zeros(0), np.zeros(0), tuple(phrases))


@dataclass(frozen=True)
class Labels:
    """A class name and probability for each of N masks; ``class_ids`` is -1 where none was confident.

    ``probabilities`` (N, len(classes)), when the labeler gives them, are every class's probability per
    mask (rows of zeros for masks it could not look at).
    """

    class_ids: np.ndarray
    scores: np.ndarray
    classes: tuple[str, ...]
    probabilities: np.ndarray | None = None

    @property
    def names(self) -> list[str]:
        return [self.classes[i] if i >= 0 else NO_LABEL for i in self.class_ids]


@runtime_checkable
class Detector(Protocol):
    """Finds boxes for phrases."""

    def detect(
        self,
        image: np.ndarray,
        phrases: Sequence[str],
        *,
        box_threshold: float | None = None,
        text_threshold: float | None = None,
    ) -> Detections:
        """Boxes for ``phrases`` in an (H, W, 3) uint8 RGB image; thresholds default to the detector's own."""
        ...


@dataclass(frozen=True)
class Segments:
    """Objects found for a list of phrases, each with its own mask (a text stage that segments, e.g. SAM 3).

    Attributes:
        detections: boxes, scores and phrases, as a :class:`Detector` gives them.
        masks: (N, H, W) bool at the input image's size.
        mask_scores: (N,) float32 quality of each mask (the model's own estimate, or the detector score).
    """

    detections: Detections
    masks: np.ndarray
    mask_scores: np.ndarray

    def __post_init__(self) -> None:
        count = len(self.detections)
        masks = np.asarray(self.masks, dtype=bool)
        if masks.ndim != 3 or masks.shape[0] != count:
            raise ValueError(f"masks must have shape ({count}, H, W), got {masks.shape}")
        object.__setattr__(self, "masks", masks)
        object.__setattr__(
            self, "mask_scores", _as_array(self.mask_scores, np.float32, (), "mask_scores", count)
        )

    def __len__(self) -> int:
        return len(self.detections)


@runtime_checkable
class TextSegmenter(Protocol):
    """Finds objects for phrases and segments them itself (no SAM stage needed)."""

    def segment(
        self,
        image: np.ndarray,
        phrases: Sequence[str],
        *,
        box_threshold: float | None = None,
        text_threshold: float | None = None,
    ) -> Segments:
        """Objects for ``phrases`` in an (H, W, 3) uint8 RGB image; thresholds default to the model's own."""
        ...


@runtime_checkable
class Labeler(Protocol):
    """Names masks with one of a list of classes."""

    def label(self, image: np.ndarray, masks: np.ndarray, classes: Sequence[str]) -> Labels:
        """Labels for (N, H, W) bool ``masks`` of an (H, W, 3) uint8 RGB image."""
        ...


def check_fraction(name: str, value: float) -> float:
    """``value`` as a float if it lies in [0, 1]; a ValueError naming ``name`` otherwise."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be a number between 0 and 1, got {value!r}")
    return float(value)
