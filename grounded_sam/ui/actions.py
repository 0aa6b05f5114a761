"""What the app's buttons do, over :class:`~grounded_sam.ui.state.AppState` and the shared models.

Each action takes the models' lock while it uses them, so that parallel browser sessions never
interleave calls on the shared predictor.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from typing import Any

import numpy as np

from grounded_sam.everything_labels import everything_result
from grounded_sam.result import Result
from grounded_sam.sam.everything import EverythingConfig, MaskGenerator
from grounded_sam.sam.predictor import SamPredictor
from grounded_sam.text.base import Labeler
from grounded_sam.ui.models import Models
from grounded_sam.ui.refine import InstanceEdit, refine_instance
from grounded_sam.ui.state import AppState

logger = logging.getLogger(__name__)


def _require_image(state: AppState) -> tuple[np.ndarray, str]:
    if state.image is None or state.image_key is None:
        raise ValueError("choose an example or upload an image first")
    return state.image, state.image_key


def _require_result(state: AppState) -> Result:
    if state.result is None:
        raise ValueError("run a text prompt first")
    return state.result


def sam_unavailable(models: Models) -> str | None:
    """Why click refinement is off (the pipeline has no SAM predictor), or None if it works.

    A text segmenter such as SAM 3 draws its own masks, so its pipeline has no SAM to re-decode with.
    Any predictor with our predictor's interface (ours, SAM 2's) refines clicks.
    """
    if models.pipeline.predictor is not None:
        return None
    return (
        f"refining with clicks and segment everything need a SAM model; this pipeline's text stage "
        f"({type(models.pipeline.detector).__name__}) draws its own masks. Set GROUNDED_SAM_SAM_MODEL "
        "(e.g. sam_vit_b) to add SAM: it then draws the masks of the detector's boxes"
    )


def everything_unavailable(models: Models) -> str | None:
    """Why segment everything is off (it needs one of this package's SAM models), or None if it works."""
    reason = sam_unavailable(models)
    predictor = models.pipeline.predictor
    if reason is None and not isinstance(predictor, SamPredictor):
        reason = (
            "segment everything needs one of this package's SAM models (sam_vit_b/l/h, mobile_sam, "
            f"demo_sam); this pipeline's predictor is a {type(predictor).__name__}"
        )
    return reason


def _require_sam(models: Models) -> Any:
    reason = sam_unavailable(models)
    if reason is not None:
        raise ValueError(reason)
    return models.pipeline.predictor


def run_text(
    models: Models,
    state: AppState,
    prompt: str,
    box_threshold: float | None = None,
    text_threshold: float | None = None,
) -> Result:
    """Find what ``prompt`` names in the session's image; the embedding computed is kept for refine clicks."""
    pixels, key = _require_image(state)
    predictor = models.pipeline.predictor if sam_unavailable(models) is None else None
    with models.lock:
        before = predictor.embedding if predictor is not None and predictor.is_image_set else None
        result = models.pipeline.predict(
            pixels, prompt, box_threshold=box_threshold, text_threshold=text_threshold
        )
        # The pipeline only embeds the image when the detector found something.
        if predictor is not None and predictor.is_image_set and predictor.embedding is not before:
            models.embeddings.remember(key, predictor)
    state.set_result(result)
    return result


def add_point(models: Models, state: AppState, index: int, x: float, y: float, positive: bool) -> Result:
    """Add a clicked point (image pixels) to instance ``index`` and re-decode it; no image re-encoding
    when the session's image embedding is cached (always, after a text run that found something)."""
    pixels, key = _require_image(state)
    result = _require_result(state)
    edit = state.edit_of(index).with_point(x, y, positive)
    template = _require_sam(models)
    with models.lock:
        predictor = models.embeddings.predictor_for(key, pixels, template)
        refined, edit = refine_instance(predictor, result, index, edit)
    state.result = refined
    state.edits[index] = edit
    return refined


def clear_points(models: Models, state: AppState, index: int) -> Result:
    """Forget instance ``index``'s points and decode it from its box alone again."""
    pixels, key = _require_image(state)
    result = _require_result(state)
    fresh = InstanceEdit(box=state.edit_of(index).box)
    template = _require_sam(models)
    with models.lock:
        predictor = models.embeddings.predictor_for(key, pixels, template)
        refined, _ = refine_instance(predictor, result, index, fresh)
    state.result = refined
    state.edits.pop(index, None)
    return refined


def everything_settings(models: Models) -> EverythingConfig:
    """The segment-everything settings that suit the loaded model: those its text stage shows segment
    everything with when it has them (the embedded demo model: ``DEMO_EVERYTHING_OUTPUT``, a few whole
    objects a scene, not the recall-tuned proposals its text stage names), else segment-anything's
    thresholds on a 16 x 16 grid."""
    config = getattr(models.pipeline.detector, "everything_config", None)
    if isinstance(config, EverythingConfig) and config.points_per_side is not None:
        return config
    return EverythingConfig(points_per_side=16)


def everything_defaults(models: Models) -> tuple[int, float, float]:
    """(points per side, min predicted IoU, min stability) the Everything tab opens at: those of
    :func:`everything_settings`."""
    config = everything_settings(models)
    return int(config.points_per_side or 16), config.pred_iou_thresh, config.stability_score_thresh


def segment_everything(
    models: Models,
    image: np.ndarray,
    classes: Sequence[str] | None,
    labeler: Labeler | None,
    *,
    points_per_side: int = 16,
    min_iou: float = 0.88,
    min_stability: float = 0.95,
) -> Result:
    """Every mask in ``image`` from a ``points_per_side``² point grid, labelled with ``classes`` when given.

    ``min_iou`` and ``min_stability`` are segment-anything's ``pred_iou_thresh`` and
    ``stability_score_thresh``; the other settings are :func:`everything_settings`'. Raises RuntimeError
    when the pipeline has no SAM.
    """
    reason = everything_unavailable(models)
    if reason is not None:
        raise RuntimeError(reason)
    config = dataclasses.replace(
        everything_settings(models),
        points_per_side=points_per_side,
        pred_iou_thresh=min_iou,
        stability_score_thresh=min_stability,
    )
    generator = MaskGenerator(models.pipeline.predictor.model, config=config)
    with models.lock:
        return everything_result(generator, image, list(classes) if classes else None, labeler=labeler)


def everything_labeler(models: Models) -> tuple[Labeler | None, str]:
    """A CLIP labeler for naming masks (the pipeline's, else the embedded demo CLIP), and where it is from."""
    if models.pipeline.labeler is not None:
        return models.pipeline.labeler, "the pipeline's labeler"
    try:
        from grounded_sam.text.demo_clip import demo_clip_labeler

        return demo_clip_labeler(), "the embedded demo CLIP"
    except (ImportError, OSError, ValueError, RuntimeError) as error:
        logger.info("no CLIP labeler for segment everything: %s", error)
        return None, f"no CLIP labeler available ({error})"


def inpaint_shown(
    state: AppState, *, prompt: str | None, dilate: int, pipeline: Any = None, steps: int = 25
) -> np.ndarray:
    """Remove (``prompt`` None, OpenCV Telea) or replace (diffusers) the shown text instances."""
    from grounded_sam.inpaint import ReplaceSettings, inpaint

    pixels, _ = _require_image(state)
    shown = state.visible()
    if shown is None or len(shown) == 0:
        raise ValueError("no instance is shown: run a text prompt and keep at least one instance visible")
    if prompt:
        settings = ReplaceSettings(steps=steps)
        out = inpaint(
            pixels,
            shown.masks,
            prompt,
            backend="diffusers",
            dilate=dilate,
            settings=settings,
            pipeline=pipeline,
        )
    else:
        out = inpaint(pixels, shown.masks, backend="remove", dilate=dilate)
    state.inpainted = out
    return out
