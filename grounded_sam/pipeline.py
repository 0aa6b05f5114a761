"""Text → masks: a detector turns phrases into boxes, SAM turns boxes into masks.

This is the only module that knows both the text stages and SAM.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np

from grounded_sam.devices import Device, PrecisionRequest
from grounded_sam.io import ImageInput, load_image
from grounded_sam.ops.mask_crops import MaskCrops
from grounded_sam.ops.masks import inside_larger
from grounded_sam.result import Result
from grounded_sam.sam.build import build_sam
from grounded_sam.sam.predictor import SamPredictor
from grounded_sam.text.base import Detections, Detector, Labeler, TextSegmenter
from grounded_sam.text.prompts import parse_prompt
from grounded_sam.tiles import Tiling, as_tiling, detect_tiled, masks_in_tiles

logger = logging.getLogger(__name__)

Prompt = str | Sequence[str]
DEFAULT_SAM = "sam_vit_b"
ONNX_PREFIX = "onnx:"  # --sam onnx:DIR: a folder written by `grounded-sam export-onnx`


@runtime_checkable
class BoxPredictor(Protocol):
    """What the pipeline needs of a SAM-style predictor (ours, or an adapter such as SAM 2's)."""

    def set_image(self, image: ImageInput) -> None:
        """Encode ``image`` once; later calls decode against it."""
        ...

    def predict_boxes(
        self, boxes: np.ndarray, multimask_output: bool = False
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(N, 4) XYXY boxes → masks (N, C, H, W) bool, scores (N, C), low-res logits (N, C, h, w)."""
        ...


def build_predictor(
    name: str | None,
    checkpoint: str | os.PathLike[str] | None = None,
    device: Device = None,
    precision: PrecisionRequest = "float32",
) -> BoxPredictor:
    """A box predictor for a SAM model name or checkpoint: SAM 2 / 2.1 names and folders give a
    :class:`~grounded_sam.sam2.Sam2Predictor` (float32 whatever ``precision`` says), ``onnx:DIR`` an ONNX
    Runtime predictor on an exported folder (:class:`~grounded_sam.sam.onnx.OnnxSamPredictor`), everything
    else our :class:`SamPredictor` in ``precision`` ("auto": bfloat16 where the device has bfloat16 units)."""
    from grounded_sam.sam2 import Sam2Predictor, uses_sam2

    if name is not None and name.startswith(ONNX_PREFIX):
        from grounded_sam.sam.onnx import OnnxSamPredictor

        return OnnxSamPredictor(name.removeprefix(ONNX_PREFIX))
    if uses_sam2(name, checkpoint):
        return Sam2Predictor.from_pretrained(name, checkpoint=checkpoint, device=device)
    return SamPredictor(build_sam(name, checkpoint=checkpoint, device=device), precision)


def as_box_predictor(predictor: BoxPredictor | Any | None) -> BoxPredictor | None:
    """``predictor`` itself when it speaks :class:`BoxPredictor`; a SAM model is wrapped in a SamPredictor."""
    if predictor is None or isinstance(predictor, BoxPredictor):
        return predictor
    return SamPredictor(predictor)


class GroundedSAM:
    """Grounded segmentation: ``predict(image, "window. door")`` → a :class:`Result` with one mask per object.

    One detector forward and one image embedding per image; all boxes of an image are decoded by SAM in
    one batched call, and masks come back at the image's original resolution.

    Args:
        detector: phrases → boxes (e.g. :class:`~grounded_sam.text.grounding_dino.GroundingDinoDetector`),
            or a :class:`~grounded_sam.text.base.TextSegmenter` that gives masks itself (e.g. SAM 3).
        predictor: a :class:`SamPredictor` (or the SAM model itself, wrapped for you) or any
            :class:`BoxPredictor`; may be ``None`` when ``detector`` is a text segmenter, whose own
            masks are then used.
        labeler: optional; relabels each mask with the best of the prompt's phrases (e.g. CLIP), useful when
            the detector's phrase assignment is unreliable.
        part_overlap: optional; a mask at least this fraction of which lies inside a larger mask of the
            same label is dropped (a part, or a second box, of one object; see
            :func:`~grounded_sam.ops.masks.inside_larger`). ``None`` (default): every mask is kept.

    Example:
        >>> pipeline = GroundedSAM.from_pretrained("sam_vit_b", "grounding_dino_tiny")  # doctest: +SKIP
        >>> result = pipeline.predict("street.jpg", "car. traffic light")  # doctest: +SKIP
        >>> result.labels, result.masks.shape  # doctest: +SKIP
        (['car', 'car', 'traffic light'], (3, 720, 1280))
    """

    def __init__(
        self,
        detector: Detector | TextSegmenter,
        predictor: BoxPredictor | Any | None = None,
        labeler: Labeler | None = None,
        part_overlap: float | None = None,
    ) -> None:
        if predictor is None and not isinstance(detector, TextSegmenter):
            raise ValueError(
                f"{type(detector).__name__} only gives boxes: pass a SAM predictor to turn them into masks"
            )
        self.detector = detector
        self.predictor = as_box_predictor(predictor)
        self.labeler = labeler
        self.part_overlap = part_overlap

    @classmethod
    def from_pretrained(
        cls,
        sam: str | None = None,
        detector: str = "grounding_dino_tiny",
        *,
        sam_checkpoint: str | os.PathLike[str] | None = None,
        detector_checkpoint: str | os.PathLike[str] | None = None,
        device: Device = None,
        precision: PrecisionRequest = "float32",
        **detector_options: Any,
    ) -> GroundedSAM:
        """Build from registered names (weights found via :mod:`grounded_sam.weights`) or explicit files.

        Args:
            sam: a SAM model name (ours, e.g. ``sam_vit_b``, or SAM 2, e.g. ``sam2.1_hiera_tiny``; see
                :func:`build_predictor`). ``None`` (default) means ``sam_vit_b`` for a box detector and no
                SAM for a detector that segments itself (``"sam3"``), whose masks are then used; naming a
                SAM (or passing ``sam_checkpoint``) with such a detector makes SAM draw its boxes' masks.
            detector: a name from :func:`~grounded_sam.text.registry.list_detectors`.
            precision: our SAM's precision (see :func:`build_predictor`).
            detector_options: thresholds and settings of the detector (see ``build_detector``).

        Example:
            >>> pipeline = GroundedSAM.from_pretrained(detector="sam3", box_threshold=0.4)  # doctest: +SKIP
        """
        from grounded_sam.text.registry import build_detector, get_detector_spec

        predictor = None
        if sam is not None or sam_checkpoint is not None or not get_detector_spec(detector).segments:
            name = DEFAULT_SAM if sam is None and sam_checkpoint is None else sam
            predictor = build_predictor(name, sam_checkpoint, device, precision)
        text_stage = build_detector(
            detector, checkpoint=detector_checkpoint, device=device, **detector_options
        )
        return cls(text_stage, predictor)

    @classmethod
    def from_sam3(
        cls, checkpoint: str | os.PathLike[str] | None = None, *, device: Device = None, **options: Any
    ) -> GroundedSAM:
        """SAM 3 alone: phrases → masks in one model, no SAM stage (and so no click refinement).

        Args:
            checkpoint: the SAM 3 folder (``facebook/sam3`` as downloaded); default: found through
                :mod:`grounded_sam.weights` (``$GROUNDED_SAM_HOME/sam3``, then the Hugging Face cache).
            options: settings of :class:`~grounded_sam.text.sam3.Sam3Segmenter` (``box_threshold``,
                ``mask_threshold``, ``max_boxes``, ``nms_threshold``, ``phrase_batch``).

        Example:
            >>> pipeline = GroundedSAM.from_sam3("~/models/sam3", device="cpu")  # doctest: +SKIP
            >>> pipeline.predict("street.jpg", "person. bicycle").labels  # doctest: +SKIP
        """
        return cls.from_pretrained(detector="sam3", detector_checkpoint=checkpoint, device=device, **options)

    def predict(
        self,
        image: ImageInput,
        text: Prompt,
        *,
        box_threshold: float | None = None,
        text_threshold: float | None = None,
        tiles: Tiling | int | tuple[int, float] | None = None,
    ) -> Result:
        """Masks of everything ``text`` names in ``image``.

        Args:
            image: a path, PIL image, (H, W, 3) uint8 array or CHW tensor (see :func:`load_image`).
            text: phrases as one string ("window. door", "window, door") or a list of phrases.
            box_threshold, text_threshold: override the detector's thresholds for this call.
            tiles: for large images, also detect in overlapping tiles and merge across tile borders:
                a :class:`~grounded_sam.tiles.Tiling`, a tile size in pixels, or (size, overlap); see
                :mod:`grounded_sam.tiles`. Needs a box detector and a SAM predictor.

        Returns:
            A :class:`Result` at the image's size (its ``source`` is the image's path when given one);
            labels are the user's phrases. Empty (N = 0) when the prompt holds no phrase or nothing is
            found.
        """
        pixels = load_image(image)
        phrases = parse_prompt(text)
        size = (int(pixels.shape[0]), int(pixels.shape[1]))
        source = os.fspath(image) if isinstance(image, str | os.PathLike) else None
        if not phrases:
            return Result.empty(size, source)
        thresholds = {"box_threshold": box_threshold, "text_threshold": text_threshold}
        detections, masks, mask_scores = self._detect_and_mask(pixels, phrases, tiles, thresholds)
        if len(detections) == 0:
            return Result.empty(size, source)
        labels = detections.labels
        scores = detections.scores
        if self.labeler is not None:
            dense = masks.dense() if isinstance(masks, MaskCrops) else masks
            relabelled = self.labeler.label(pixels, dense, phrases)
            labels, scores = relabelled.names, relabelled.scores
        result = Result(
            masks=masks,
            boxes=detections.boxes,
            labels=labels,
            scores=scores,
            mask_scores=mask_scores,
            image_size=size,
            source=source,
        )
        if self.part_overlap is not None and len(result) > 1:
            ids = np.unique(np.asarray(result.labels, dtype=object), return_inverse=True)[1]
            parts = inside_larger(masks, ids, self.part_overlap)  # dense, or MaskCrops when tiled
            result = result[np.flatnonzero(~parts)]
        return result

    def _detect_and_mask(
        self,
        pixels: np.ndarray,
        phrases: list[str],
        tiles: Tiling | int | tuple[int, float] | None,
        thresholds: dict[str, float | None],
    ) -> tuple[Detections, np.ndarray | MaskCrops, np.ndarray]:
        """Detections, their masks ((N, H, W) bool, or `MaskCrops` when tiled) and mask scores (N,)."""
        if tiles is not None:
            if self.predictor is None:
                raise ValueError("tiled prediction needs a box detector and a SAM predictor")
            tiling = as_tiling(tiles)
            detections = detect_tiled(self.detector, pixels, phrases, tiling, **thresholds)
            return detections, *masks_in_tiles(self.predictor, pixels, detections.boxes, tiling)
        if self.predictor is None:
            found = self.detector.segment(pixels, phrases, **thresholds)
            return found.detections, found.masks, found.mask_scores
        detections = self.detector.detect(pixels, phrases, **thresholds)
        return detections, *self._masks_for(pixels, detections)

    def _masks_for(self, pixels: np.ndarray, detections: Detections) -> tuple[np.ndarray, np.ndarray]:
        """One (N, H, W) mask and (N,) score per detected box, from the SAM predictor."""
        if len(detections) == 0:
            return np.zeros((0, *pixels.shape[:2]), dtype=bool), np.zeros(0, dtype=np.float32)
        self.predictor.set_image(pixels)
        masks, mask_scores, _ = self.predictor.predict_boxes(detections.boxes, multimask_output=False)
        return masks[:, 0], mask_scores[:, 0]

    def predict_batch(self, images: Iterable[ImageInput], text: Prompt, **options: Any) -> list[Result]:
        """:meth:`predict` for each image, in order (one detector forward and one embedding each);
        `options` are those of :meth:`predict` (thresholds, tiles)."""
        return [self.predict(image, text, **options) for image in images]
