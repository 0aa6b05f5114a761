"""Streamlit-free actions of the Review page: re-prompt one image with a phrase or a click, draw it.

The decisions themselves live in :class:`grounded_sam.labeling.review.ReviewSession`.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from grounded_sam.annotate import overlay
from grounded_sam.io import load_image
from grounded_sam.labeling.review import ReviewSession
from grounded_sam.result import Result
from grounded_sam.ui.models import Models

REVIEW_ENV = "GROUNDED_SAM_REVIEW_DATASET"
STATUS_MARK = {"unreviewed": "?", "approved": "✓", "rejected": "✗"}


def review_picture(session: ReviewSession, rel: str, pixels: np.ndarray) -> Image.Image:
    """The image with its instances that are not rejected, labelled "#index class ✓/?"."""
    shown = [inst for inst in session.instances(rel) if inst.status != "rejected"]
    result = session.result(rel)
    labels = [f"#{inst.index} {inst.class_name} {STATUS_MARK[inst.status]}" for inst in shown]
    named = Result(result.masks, result.boxes, labels, result.scores, result.mask_scores, result.image_size)
    return overlay(pixels, named, alpha=0.45)


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
    predictor = models.pipeline.predictor
    if predictor is None or not hasattr(predictor, "predict"):
        raise ValueError("this pipeline has no SAM predictor for clicks; re-prompt with a phrase")
    h, w = pixels.shape[:2]
    if not (0 <= x < w and 0 <= y < h):
        raise ValueError(f"the click ({x:.0f}, {y:.0f}) lies outside the {w}×{h} image")
    with models.lock:
        sam = models.embeddings.predictor_for(f"review:{session.root}:{rel}", pixels, predictor)
        masks, scores, _ = sam.predict(
            point_coords=np.array([[x, y]], dtype=np.float32),
            point_labels=np.array([1]),
            multimask_output=True,
        )
    best = int(np.argmax(scores))
    mask = np.asarray(masks[best], dtype=bool)
    if not mask.any():
        return []
    found = Result(
        mask[None], np.zeros((1, 4), np.float32), [class_name], [1.0], [float(scores[best])], (h, w)
    )
    found = Result(found.masks, found.mask_boxes(), found.labels, found.scores, found.mask_scores, (h, w))
    return session.add(rel, found, class_name, via=f"click {x:.0f},{y:.0f}")
