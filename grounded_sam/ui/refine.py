"""Click-to-refine: re-decode one instance from its box, the clicked points and its previous logits.

The image embedding is never recomputed for a click: :class:`EmbeddingCache` keeps, per image, a
predictor holding that image's embedding (the one the text run computed, when there was one).
"""

from __future__ import annotations

import copy
from collections import OrderedDict
from dataclasses import dataclass, field, replace

import numpy as np

from grounded_sam.ops.boxes import masks_to_boxes
from grounded_sam.result import Result
from grounded_sam.sam.predictor import SamPredictor


@dataclass(frozen=True)
class InstanceEdit:
    """The refinement prompts of one instance.

    Attributes:
        box: (4,) float32 XYXY pixels, the box prompt (the detector's box, kept across clicks).
        points: clicked (x, y, label) in image pixels; label 1 adds to the mask, 0 removes.
        logits: (1, 256, 256) low-res mask logits of the last decode, fed back as the mask prompt.
    """

    box: np.ndarray
    points: tuple[tuple[float, float, int], ...] = ()
    logits: np.ndarray | None = field(default=None, repr=False)

    def with_point(self, x: float, y: float, positive: bool) -> InstanceEdit:
        return replace(self, points=(*self.points, (float(x), float(y), int(positive))))


class EmbeddingCache:
    """Image id -> a predictor holding that image's embedding; the least recently used go first.

    The predictors share the SAM model; only the embedding (a few MB per image) is kept per entry. Any
    predictor with :class:`SamPredictor`'s interface works (e.g. ``grounded_sam.sam2.Sam2Predictor``).
    """

    def __init__(self, capacity: int = 4) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1; got {capacity}")
        self.capacity = capacity
        self._entries: OrderedDict[str, SamPredictor] = OrderedDict()

    def __contains__(self, key: str) -> bool:
        return key in self._entries

    def remember(self, key: str, predictor: SamPredictor) -> None:
        """Keep ``predictor``'s current embedding under ``key`` (a shallow copy: later ``set_image``
        calls on ``predictor`` do not change what is kept)."""
        self._put(key, copy.copy(predictor))

    def predictor_for(self, key: str, pixels: np.ndarray, template: SamPredictor) -> SamPredictor:
        """The predictor of image ``key``; on a miss, ``pixels`` are embedded once (``template``'s model)."""
        found = self._entries.get(key)
        if found is not None:
            self._entries.move_to_end(key)
            return found
        predictor = copy.copy(template)  # shares the model, not the embedding
        predictor.reset_image()
        predictor.set_image(pixels)
        self._put(key, predictor)
        return predictor

    def _put(self, key: str, predictor: SamPredictor) -> None:
        self._entries[key] = predictor
        self._entries.move_to_end(key)
        while len(self._entries) > self.capacity:
            self._entries.popitem(last=False)


def refine_instance(
    predictor: SamPredictor, result: Result, index: int, edit: InstanceEdit
) -> tuple[Result, InstanceEdit]:
    """Re-decode instance ``index`` of ``result`` from ``edit``'s box, points and previous logits.

    The first refinement starts from the box-only decode (what the pipeline produced) so that its logits
    seed the mask prompt. Returns the result with that instance's mask, box (tight XYXY, exclusive far
    edges; unchanged if the mask comes out empty) and mask score replaced, and the edit with new logits.
    """
    if not 0 <= index < len(result):
        raise IndexError(f"instance {index} does not exist; the result has {len(result)} instances")
    if edit.logits is None:
        _, _, first = predictor.predict(box=edit.box, multimask_output=False)
        edit = replace(edit, logits=first)
    coords = labels = None
    if edit.points:
        coords = np.array([p[:2] for p in edit.points], dtype=np.float32)
        labels = np.array([p[2] for p in edit.points], dtype=np.int64)
    masks, scores, logits = predictor.predict(
        point_coords=coords, point_labels=labels, box=edit.box, mask_input=edit.logits, multimask_output=False
    )
    return replace_instance(result, index, masks[0], float(scores[0])), replace(edit, logits=logits)


def replace_instance(result: Result, index: int, mask: np.ndarray, mask_score: float) -> Result:
    """A copy of ``result`` whose instance ``index`` gets ``mask`` ((H, W) bool), its tight box and score."""
    masks = result.masks.copy()
    boxes = result.boxes.copy()
    mask_scores = result.mask_scores.copy()
    masks[index] = mask
    if mask.any():
        boxes[index] = masks_to_boxes(mask[None])[0]
    mask_scores[index] = mask_score
    return Result(masks, boxes, list(result.labels), result.scores.copy(), mask_scores, result.image_size)
