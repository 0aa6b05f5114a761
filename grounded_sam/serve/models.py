"""The loaded models: the pipeline of ``grounded_sam.predict``, its worker, and the embedding cache.

Every method that runs a model is meant for the model's worker thread (see :class:`ModelWorker`): one
call at a time, so the predictors' per-image state is never shared between two requests.
"""

from __future__ import annotations

import copy
import logging
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from grounded_sam.result import Result
from grounded_sam.sam.base_predictor import PromptPredictor, pixel_digest
from grounded_sam.serve.cache import EmbeddingCache
from grounded_sam.serve.config import ServeConfig
from grounded_sam.serve.errors import ApiError
from grounded_sam.serve.limits import ModelWorker

if TYPE_CHECKING:
    from grounded_sam.pipeline import GroundedSAM
    from grounded_sam.sam.everything import MaskGenerator
    from grounded_sam.text.base import Labeler

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PromptMasks:
    """Masks for interactive prompts: (K, H, W) bool ``masks``, (K,) ``scores`` (SAM's predicted IoU),
    (K,) ``prompt_index`` (which prompt each mask answers) and whether the embedding was cached."""

    masks: np.ndarray
    scores: np.ndarray
    prompt_index: np.ndarray
    cache_hit: bool


class ModelRegistry:
    """The served pipeline (built once, as :func:`grounded_sam.api.default_pipeline` builds it), the
    segment-everything generators built on first use, and the per-image embedding cache."""

    def __init__(self, pipeline: GroundedSAM, config: ServeConfig, name: str) -> None:
        self.pipeline = pipeline
        self.config = config
        self.name = name
        self.worker = ModelWorker(name, config.max_queue)
        self.cache = EmbeddingCache(config.cache_images)
        self._generators: dict[bool, tuple[MaskGenerator, Labeler | None]] = {}
        self._generator_lock = threading.Lock()
        self._prompt_predictor = self._make_prompt_predictor(pipeline)

    @classmethod
    def load(cls, config: ServeConfig) -> ModelRegistry:
        """Build the pipeline named by ``config`` (the demo model by default); errors say which weights
        are missing or which name is unknown."""
        from grounded_sam.api import default_pipeline

        pipeline = default_pipeline(config.sam, config.detector, config.device)
        return cls(pipeline, config, model_name(config))

    @staticmethod
    def _make_prompt_predictor(pipeline: GroundedSAM) -> PromptPredictor | None:
        predictor = pipeline.predictor
        if not isinstance(predictor, PromptPredictor):
            return None
        interactive = copy.copy(predictor)  # shares the model, never the pipeline's current embedding
        interactive.reset_image()
        return interactive

    def describe(self) -> dict[str, Any]:
        """The pipeline's parts and settings, as ``GET /v1/models`` shows them."""
        pipeline = self.pipeline
        detector = pipeline.detector
        settings = {
            key: getattr(detector, key)
            for key in ("box_threshold", "text_threshold")
            if isinstance(getattr(detector, key, None), int | float)
        }
        return {
            "name": self.name,
            "sam": self.config.sam or "default",
            "detector": self.config.detector or "default",
            "detector_class": type(detector).__name__,
            "predictor_class": type(pipeline.predictor).__name__ if pipeline.predictor else None,
            "labeler_class": type(pipeline.labeler).__name__ if pipeline.labeler else None,
            "device": str(getattr(pipeline.predictor, "device", self.config.device or "cpu")),
            "settings": settings,
            "interactive": self._prompt_predictor is not None,
            "cache_images": self.cache.capacity,
            "max_queue": self.worker.max_queue,
        }

    def segment(
        self,
        pixels: np.ndarray,
        image_id: str,
        prompt: str,
        box_threshold: float | None = None,
        text_threshold: float | None = None,
    ) -> Result:
        """Text -> masks, exactly as ``grounded_sam.predict``; the image's embedding is kept for clicks."""
        result = self.pipeline.predict(
            pixels, prompt, box_threshold=box_threshold, text_threshold=text_threshold
        )
        predictor = self.pipeline.predictor
        if (
            isinstance(predictor, PromptPredictor)
            and predictor.is_image_set
            and predictor.embedding.image_digest == pixel_digest(pixels)
        ):
            self.cache.put(image_id, predictor.embedding)
        return result

    def prompt_masks(
        self,
        image_id: str,
        pixels: np.ndarray | None,
        points: np.ndarray | None,
        point_labels: np.ndarray | None,
        boxes: np.ndarray | None,
        multimask_output: bool,
    ) -> PromptMasks:
        """Masks for clicks and boxes in image pixels, decoded against the cached embedding of
        ``image_id`` (embedded from ``pixels`` and cached on a miss).

        ``points`` (P, 2) XY with ``point_labels`` (P,) (1 foreground, 0 background) and at most one box
        form one prompt; (N, 4) ``boxes`` without points are N prompts decoded in one batched call.
        """
        predictor = self._prompt_predictor
        if predictor is None:
            raise ApiError(
                409,
                "not_interactive",
                f"the served pipeline has no promptable SAM ({type(self.pipeline.predictor).__name__}); "
                "start the server with --sam naming one of this package's SAM models",
            )
        embedding = self.cache.get(image_id)
        hit = embedding is not None
        if hit:
            predictor.set_embedding(embedding)
        elif pixels is None:
            raise ApiError(
                404,
                "unknown_image",
                f"image {image_id} is not in the cache (never sent, or evicted); send the image again",
            )
        else:
            predictor.set_image(pixels)
            self.cache.put(image_id, predictor.embedding)
        batched = boxes is not None and len(boxes) > 1
        box = boxes if batched else (None if boxes is None else boxes[0])
        masks, scores, _ = predictor.predict(points, point_labels, box, None, multimask_output)
        if not batched:
            masks, scores = masks[None], scores[None]
        count, channels = scores.shape
        return PromptMasks(
            masks=masks.reshape(count * channels, *masks.shape[-2:]),
            scores=scores.reshape(-1),
            prompt_index=np.repeat(np.arange(count), channels),
            cache_hit=hit,
        )

    def everything(self, pixels: np.ndarray, classes: list[str] | None) -> Result:
        """Segment everything; with ``classes``, each mask named by the labeler (or ``"no label"``)."""
        from grounded_sam.everything_labels import everything_result

        generator, labeler = self._generator(classes is not None)
        return everything_result(generator, pixels, classes, labeler=labeler)

    def _generator(self, labelled: bool) -> tuple[MaskGenerator, Labeler | None]:
        """The mask generator, with the labeler that names its masks when ``labelled``."""
        from grounded_sam.api import default_everything_labeler, default_mask_generator

        with self._generator_lock:
            if labelled not in self._generators:
                try:
                    generator = default_mask_generator(self.config.sam, self.config.device)
                except ValueError as error:
                    raise ApiError(409, "not_available", str(error)) from None
                config = self.config
                labeler = default_everything_labeler(config.sam, config.device) if labelled else None
                self._generators[labelled] = (generator, labeler)
            return self._generators[labelled]

    def close(self) -> None:
        self.worker.close()


def model_name(config: ServeConfig) -> str:
    """A short name for the served pipeline: ``demo``, or ``SAM+DETECTOR`` as configured."""
    if config.sam is None and config.detector is None:
        return "default"
    return f"{config.sam or 'default'}+{config.detector or 'default'}"
