"""Streamlit-free actions of the Review page: re-prompt one image with a phrase or a click, refine an
instance with clicks on it, draw the image.

The decisions themselves live in :class:`grounded_sam.labeling.review.ReviewSession`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image

from grounded_sam.annotate import overlay
from grounded_sam.io import load_image
from grounded_sam.labeling.review import ReviewSession
from grounded_sam.ops.rle import rle_to_mask
from grounded_sam.result import Result
from grounded_sam.ui.models import Models

REVIEW_ENV = "GROUNDED_SAM_REVIEW_DATASET"
STATUS_MARK = {"unreviewed": "?", "approved": "✓", "rejected": "✗"}


def review_picture(session: ReviewSession, rel: str, pixels: np.ndarray) -> Image.Image:
    """The image with its instances that are not rejected, labelled "#index class ✓/?"."""
    shown = [inst for inst in session.instances(rel) if inst.status != "rejected"]
    result = session.result(rel)
    labels = [f"#{inst.index} {inst.class_name} {STATUS_MARK[inst.status]}" for inst in shown]
    return overlay(pixels, result.with_labels(labels), alpha=0.45)


def load_review_image(session: ReviewSession, rel: str) -> np.ndarray:
    return load_image(session.image_path(rel))


def reprompt_phrase(
    models: Models, session: ReviewSession, rel: str, pixels: np.ndarray, phrase: str, class_name: str
) -> list[int]:
    """Run the pipeline on one image with `phrase`; add what it finds as `class_name`; return the new
    instance indices (none found: an empty list)."""
    if not phrase.strip():
        raise ValueError("type a phrase to look for")
    with models.lock:
        found = models.pipeline.predict(pixels, phrase)
    return session.add(rel, found, class_name, via=f"phrase: {phrase.strip()}") if len(found) else []


def reprompt_click(
    models: Models, session: ReviewSession, rel: str, pixels: np.ndarray, x: float, y: float, class_name: str
) -> list[int]:
    """SAM's best mask for one positive click at (x, y) image pixels, added as `class_name`."""
    h, w = pixels.shape[:2]
    masks, scores = _sam_predict(models, session, rel, pixels, [(x, y, 1)], None, multimask_output=True)
    best = int(np.argmax(scores))
    mask = np.asarray(masks[best], dtype=bool)
    if not mask.any():
        return []
    found = Result(
        mask[None], np.zeros((1, 4), np.float32), [class_name], [1.0], [float(scores[best])], (h, w)
    )
    found = Result(found.masks, found.mask_boxes(), found.labels, found.scores, found.mask_scores, (h, w))
    return session.add(rel, found, class_name, via=f"click {x:.0f},{y:.0f}")


def instance_at(
    session: ReviewSession, rel: str, x: float, y: float, prefer: int | None = None
) -> int | None:
    """The instance of image `rel` (not rejected) a click at pixel (x, y) refines: `prefer` (the one being
    edited) when its box, grown to hold its clicks so far, holds the click; else the smallest mask
    holding it, else the smallest box (a click that extends a mask); None on the background."""
    live = [inst for inst in session.instances(rel) if inst.status != "rejected"]
    for inst in live:
        if inst.index == prefer and _holds(_prompt_box(inst.box, inst.points), x, y):
            return prefer
    masks = {inst.index: rle_to_mask(inst.mask) for inst in live}
    hits = [inst.index for inst in live if masks[inst.index][int(y), int(x)]]
    if hits:
        return min(hits, key=lambda i: (int(masks[i].sum()), i))
    area = {inst.index: (inst.box[2] - inst.box[0]) * (inst.box[3] - inst.box[1]) for inst in live}
    inside = [inst.index for inst in live if _holds(inst.box, x, y)]
    return min(inside, key=lambda i: (area[i], i), default=None)


def _holds(box: Sequence[float], x: float, y: float) -> bool:
    return box[0] <= x < box[2] and box[1] <= y < box[3]


def refine_click(
    models: Models,
    session: ReviewSession,
    rel: str,
    pixels: np.ndarray,
    index: int,
    x: float,
    y: float,
    positive: bool = True,
) -> None:
    """Re-draw instance `index` of `rel` with SAM from its box and every click on it so far plus this one
    at (x, y) image pixels (`positive`: the pixel belongs to the object, else it does not); saved as a
    ``refine`` decision (see `ReviewSession.refine`)."""
    inst = session.instances(rel)[index]
    points = [*inst.points, (float(x), float(y), int(positive))]
    masks, scores = _sam_predict(models, session, rel, pixels, points, _prompt_box(inst.box, points))
    session.refine(rel, index, np.asarray(masks[0], dtype=bool), float(scores[0]), points)


def _prompt_box(box: Sequence[float], points: Sequence[tuple[float, float, int]]) -> np.ndarray:
    """(4,) XYXY: the instance's box grown to hold every positive click."""
    xs = [box[0], box[2], *(p[0] for p in points if p[2]), *(p[0] + 1 for p in points if p[2])]
    ys = [box[1], box[3], *(p[1] for p in points if p[2]), *(p[1] + 1 for p in points if p[2])]
    return np.array([min(xs), min(ys), max(xs), max(ys)], dtype=np.float32)


def _sam_predict(
    models: Models,
    session: ReviewSession,
    rel: str,
    pixels: np.ndarray,
    points: Sequence[tuple[float, float, int]],
    box: np.ndarray | None,
    multimask_output: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """SAM's masks (C, H, W) and scores (C,) for clicks (x, y, label) and an optional box on image `rel`
    (its embedding cached per image)."""
    predictor = models.pipeline.predictor
    if predictor is None or not hasattr(predictor, "predict"):
        raise ValueError("this pipeline has no SAM predictor for clicks; re-prompt with a phrase")
    h, w = pixels.shape[:2]
    x, y = points[-1][:2]
    if not (0 <= x < w and 0 <= y < h):
        raise ValueError(f"the click ({x:.0f}, {y:.0f}) lies outside the {w}×{h} image")
    with models.lock:
        sam = models.embeddings.predictor_for(f"review:{session.root}:{rel}", pixels, predictor)
        masks, scores, _ = sam.predict(
            point_coords=np.array([p[:2] for p in points], dtype=np.float32),
            point_labels=np.array([p[2] for p in points], dtype=np.int64),
            box=box,
            multimask_output=multimask_output,
        )
    return masks, scores
