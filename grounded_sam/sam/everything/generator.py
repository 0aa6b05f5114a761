"""Segment everything: masks for a whole image from a grid of point prompts (or from box prompts).

:class:`MaskGenerator` gives the output of ``segment_anything.SamAutomaticMaskGenerator`` with the same
parameters (the same masks in the same order, identical up to pixels whose logit is within float rounding
of 0; the same scores up to the network's float noise), but without its needless work:

* the predicted-IoU filter runs before anything is upsampled, and the mask decoder's upscaling branch
  only runs for prompts that have a mask above the IoU threshold (the IoU head does not depend on it);
* full-resolution logits are computed only in the tiles a mask's contours (at the mask threshold and
  the stability cuts) cross; the low-res logits settle every other tile (see
  :mod:`~grounded_sam.sam.everything.tiled_logits`), and candidates stay tiled until suppression;
* RLE counts are computed from the mask's box only, with numpy.

Example:
    >>> generator = MaskGenerator(build_sam("sam_vit_b"), points_per_side=32)  # doctest: +SKIP
    >>> records = generator.generate(image)  # list of dicts, as segment_anything  # doctest: +SKIP
    >>> result = generator.generate_result(image)  # a Result  # doctest: +SKIP
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch

from grounded_sam.devices import PrecisionRequest
from grounded_sam.io import ImageInput, load_image
from grounded_sam.ops.boxes import nms, xyxy_to_xywh
from grounded_sam.ops.rle import counts_to_rle
from grounded_sam.result import Result
from grounded_sam.sam.everything import mask_ops
from grounded_sam.sam.everything.candidates import (
    GenerationStats,
    MaskSet,
    clean_small_regions,
    decode_candidates,
)
from grounded_sam.sam.everything.mask_ops import CompactMask
from grounded_sam.sam.everything.object_aware import BoxSource, DetectorLike, prompt_boxes
from grounded_sam.sam.modeling.sam import Sam
from grounded_sam.sam.predictor import SamPredictor

if TYPE_CHECKING:
    from grounded_sam.sam.everything.prompt_points import PromptPointSelector

logger = logging.getLogger(__name__)

OutputMode = Literal["binary_mask", "uncompressed_rle", "coco_rle"]
OUTPUT_MODES: tuple[str, ...] = ("binary_mask", "uncompressed_rle", "coco_rle")


@dataclass(frozen=True, eq=False)
class EverythingConfig:
    """Settings of :class:`MaskGenerator`; the names and meanings are segment-anything's.

    Attributes:
        points_per_side: grid of n × n point prompts per crop layer 0 (None: give ``point_grids``).
        points_per_batch: prompts decoded at once (a memory cap; the output does not depend on it).
        pred_iou_thresh: keep masks whose predicted IoU is above this (≤ 0: no filter).
        stability_score_thresh: keep masks whose stability score is at least this (≤ 0: no filter).
        stability_score_offset: logit offset of the two thresholds of the stability score.
        box_nms_thresh: box IoU of the non-maximum suppression within a crop.
        crop_n_layers: extra crop layers; layer i cuts the image into 2^i × 2^i overlapping crops.
        crop_nms_thresh: box IoU of the suppression between crops (smaller crops preferred).
        crop_overlap_ratio: overlap of the layer-1 crops as a fraction of the short image side.
        crop_n_points_downscale_factor: layer i uses ``points_per_side / factor**i`` points per side.
        point_grids: explicit (P, 2) XY grids in [0, 1], one per crop layer (with points_per_side None).
        min_mask_region_area: if > 0, fill holes and drop islands smaller than this many pixels.
        output_mode: ``"binary_mask"`` (H, W) bool, ``"uncompressed_rle"`` or ``"coco_rle"``.
        max_box_prompts: box-prompt mode only: at most this many boxes are decoded.
    """

    points_per_side: int | None = 32
    points_per_batch: int = 64
    pred_iou_thresh: float = 0.88
    stability_score_thresh: float = 0.95
    stability_score_offset: float = 1.0
    box_nms_thresh: float = 0.7
    crop_n_layers: int = 0
    crop_nms_thresh: float = 0.7
    crop_overlap_ratio: float = 512 / 1500
    crop_n_points_downscale_factor: int = 1
    point_grids: tuple[np.ndarray, ...] | None = None
    min_mask_region_area: int = 0
    output_mode: OutputMode = "binary_mask"
    max_box_prompts: int = 320
    _grids: tuple[np.ndarray, ...] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if (self.points_per_side is None) == (self.point_grids is None):
            raise ValueError("give exactly one of points_per_side and point_grids (set the other to None)")
        _check_int(self.points_per_batch, "points_per_batch", 1)
        _check_int(self.crop_n_layers, "crop_n_layers", 0)
        _check_int(self.crop_n_points_downscale_factor, "crop_n_points_downscale_factor", 1)
        _check_int(self.min_mask_region_area, "min_mask_region_area", 0)
        _check_int(self.max_box_prompts, "max_box_prompts", 1)
        for name in ("pred_iou_thresh", "stability_score_thresh", "stability_score_offset"):
            if not np.isfinite(getattr(self, name)):
                raise ValueError(f"{name} must be a finite number, got {getattr(self, name)!r}")
        for name in ("box_nms_thresh", "crop_nms_thresh"):
            if not 0.0 < getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in (0, 1], got {getattr(self, name)!r}")
        if not 0.0 <= self.crop_overlap_ratio < 1.0:
            raise ValueError(f"crop_overlap_ratio must be in [0, 1), got {self.crop_overlap_ratio!r}")
        if self.output_mode not in OUTPUT_MODES:
            raise ValueError(f"output_mode must be one of {OUTPUT_MODES}, got {self.output_mode!r}")
        if self.points_per_side is not None:
            _check_int(self.points_per_side, "points_per_side", 1)
            grids = mask_ops.layer_point_grids(
                self.points_per_side, self.crop_n_layers, self.crop_n_points_downscale_factor
            )
        else:
            grids = [np.asarray(g, dtype=np.float64) for g in self.point_grids or ()]
        if len(grids) != self.crop_n_layers + 1:
            raise ValueError(
                f"point_grids needs one grid per crop layer ({self.crop_n_layers + 1}), got {len(grids)}"
            )
        for layer, grid in enumerate(grids):
            if grid.ndim != 2 or grid.shape[1] != 2 or len(grid) == 0 or grid.min() < 0 or grid.max() > 1:
                raise ValueError(
                    f"the point grid of crop layer {layer} must be a non-empty (P, 2) array in [0, 1], got "
                    f"shape {grid.shape} (with points_per_side, lower crop_n_points_downscale_factor)"
                )
        object.__setattr__(self, "point_grids", tuple(grids) if self.point_grids is not None else None)
        object.__setattr__(self, "_grids", tuple(grids))

    def layer_grids(self) -> tuple[np.ndarray, ...]:
        """(P, 2) float64 XY point grid in the unit square of each crop layer."""
        return self._grids


class MaskGenerator:
    """Masks of everything in an image; a drop-in for ``segment_anything.SamAutomaticMaskGenerator``.

    Pass the reference's parameters by name or position (plus ``max_box_prompts`` for
    :meth:`generate_from_boxes`), or a whole :class:`EverythingConfig` as ``config=`` (then leave the
    others at their defaults). Bad settings raise ``ValueError``. Naming the masks with classes is the
    pipeline's step after this one (:func:`grounded_sam.everything_labels.everything_result`).
    ``precision="bfloat16"`` (or ``"int8"`` on x86 CPUs) encodes the image in bfloat16 (int8 linear
    layers; see :class:`SamPredictor`): much faster on hardware with bfloat16 (int8) matrix units, but the
    masks are no longer exactly the float32 reference's.
    ``predictor``: a predictor of ``model`` to embed images with (e.g. a ``ZoomPredictor`` whose embedding
    the caller reuses for box prompts afterwards); by default one of its own.
    ``prompt_points``: chooses each crop's point prompts from its grid (e.g.
    :class:`~grounded_sam.sam.everything.prompt_points.FlatRegionPoints`); by default the whole grid,
    as the reference.

    Example:
        >>> generator = MaskGenerator(sam, pred_iou_thresh=0.86, crop_n_layers=1)  # doctest: +SKIP
        >>> records = generator.generate(image)  # doctest: +SKIP
        >>> records[0].keys()  # segmentation, area, bbox (XYWH), predicted_iou, point_coords, ...
    """

    def __init__(
        self,
        model: Sam,
        points_per_side: int | None = 32,
        points_per_batch: int = 64,
        pred_iou_thresh: float = 0.88,
        stability_score_thresh: float = 0.95,
        stability_score_offset: float = 1.0,
        box_nms_thresh: float = 0.7,
        crop_n_layers: int = 0,
        crop_nms_thresh: float = 0.7,
        crop_overlap_ratio: float = 512 / 1500,
        crop_n_points_downscale_factor: int = 1,
        point_grids: Sequence[np.ndarray] | None = None,
        min_mask_region_area: int = 0,
        output_mode: OutputMode = "binary_mask",
        *,
        max_box_prompts: int = 320,
        config: EverythingConfig | None = None,
        precision: PrecisionRequest = "float32",
        predictor: SamPredictor | None = None,
        prompt_points: PromptPointSelector | None = None,
    ) -> None:
        given = dict(locals())
        if config is None:
            settings = {f.name: given[f.name] for f in fields(EverythingConfig) if f.name in given}
            settings["point_grids"] = tuple(point_grids) if point_grids is not None else None
            config = EverythingConfig(**settings)
        elif not isinstance(config, EverythingConfig):
            raise TypeError(f"config must be an EverythingConfig, got {type(config).__name__}")
        else:
            changed = [
                f.name for f in fields(EverythingConfig) if f.name in given and _differs(f, given[f.name])
            ]
            if changed:
                raise ValueError(f"pass either config= or individual settings, not both (got {changed})")
        self.config = config
        if predictor is not None and predictor.model is not model:
            raise ValueError("predictor must wrap the generator's model")
        self.predictor = SamPredictor(model, precision) if predictor is None else predictor
        self.prompt_points = prompt_points
        self.stats = GenerationStats()
        """Counts of the last ``generate*`` call."""

    @property
    def model(self) -> Sam:
        return self.predictor.model

    def generate(self, image: ImageInput) -> list[dict[str, Any]]:
        """Records of every mask in ``image`` (an (H, W, 3) uint8 RGB array, a path, a PIL image, ...).

        Each record has segment-anything's keys: ``segmentation`` ((H, W) bool or an RLE dict, see
        ``output_mode``), ``area`` (pixels), ``bbox`` (XYWH, width = x1 - x0 of the inclusive box),
        ``predicted_iou``, ``point_coords`` ([[x, y]] of the prompt), ``stability_score`` and
        ``crop_box`` (XYWH).
        """
        pixels = load_image(image)
        return self._records(self._everything(pixels))

    def generate_from_boxes(
        self,
        image: ImageInput,
        boxes: BoxSource = None,
        *,
        detector: DetectorLike | None = None,
        phrases: Sequence[str] = ("object",),
    ) -> list[dict[str, Any]]:
        """Object-aware mode (MobileSAMv2 style): one mask per box prompt instead of a point grid.

        Prompts are ``boxes`` ((N, 4) XYXY pixels, or :class:`~grounded_sam.text.base.Detections`), or
        the boxes a ``detector`` finds for ``phrases`` (a ``Detector`` or any ``image → boxes``
        callable); at most ``max_box_prompts`` of them (the best scores first). Each box gives a single
        mask; the IoU and stability filters and the box NMS then apply as in grid mode. Far fewer
        prompts than a 32 × 32 grid make it much faster, and the output is object-level: one mask per
        detected object rather than every part and sub-part. Records also carry ``prompt_box`` (XYXY);
        ``point_coords`` is the box centre.
        """
        pixels = load_image(image)
        return self._records(self._from_boxes(pixels, boxes, detector, phrases))

    def generate_result(
        self,
        image: ImageInput,
        *,
        boxes: BoxSource = None,
        detector: DetectorLike | None = None,
        phrases: Sequence[str] = ("object",),
    ) -> Result:
        """The masks of :meth:`generate` (or, with ``boxes``/``detector``, :meth:`generate_from_boxes`)
        as a :class:`~grounded_sam.result.Result`, in the same order.

        Every label is ``"object"``; ``scores`` and ``mask_scores`` are SAM's predicted IoU (the
        stability score is in the records of :meth:`generate`). Boxes are XYXY with the far edge
        exclusive, as everywhere in ``Result``. Naming the masks with classes:
        :func:`grounded_sam.everything_labels.everything_result`.
        """
        pixels = load_image(image)
        if boxes is None and detector is None:
            found = self._everything(pixels)
        else:
            found = self._from_boxes(pixels, boxes, detector, phrases)
        found = self._clean_regions(found)
        height, width = pixels.shape[:2]
        if len(found) == 0:
            return Result.empty((height, width))
        masks = np.stack([m.to_mask() for m in found.masks])
        labels, scores = ["object"] * len(found), found.iou
        areas = np.array([m.area for m in found.masks])
        exclusive = found.boxes.astype(np.float32) + np.where(areas[:, None] > 0, [0, 0, 1, 1], 0)
        return Result(masks, exclusive, labels, scores, found.iou.copy(), (height, width))

    # --- pipelines ---------------------------------------------------------------------------------

    def _everything(self, pixels: np.ndarray) -> MaskSet:
        config = self.config
        size = (int(pixels.shape[0]), int(pixels.shape[1]))
        crops, layers = mask_ops.crop_boxes(size, config.crop_n_layers, config.crop_overlap_ratio)
        stats = GenerationStats()
        with self.predictor.network_context():
            found = MaskSet.concat(
                [
                    self._crop(pixels, crop, config.layer_grids()[layer], stats)
                    for crop, layer in zip(crops, layers, strict=True)
                ]
            )
        if len(crops) > 1:
            from torchvision.ops import box_area

            # Prefer masks from smaller crops.
            scores = 1 / box_area(torch.as_tensor(found.crop_boxes))
            found = found.take(nms(found.boxes, scores, config.crop_nms_thresh))
        stats.kept = len(found)
        self.stats = stats
        logger.debug("segment everything: %s", stats)
        return found

    def _crop(
        self, pixels: np.ndarray, crop: tuple[int, int, int, int], grid: np.ndarray, stats: GenerationStats
    ) -> MaskSet:
        """Masks of one crop (XYXY, far edge exclusive) after its own NMS, in the image's frame."""
        x0, y0, x1, y1 = crop
        cropped = np.ascontiguousarray(pixels[y0:y1, x0:x1])
        self.predictor.set_image(cropped)
        embedding = self.predictor.embedding
        if self.prompt_points is not None:
            grid = self.prompt_points(cropped, grid)
        points = grid * np.array(embedding.original_size[::-1])[None]
        image_box = (0, 0, pixels.shape[1], pixels.shape[0])
        found = decode_candidates(
            self.model, embedding, points, crop, image_box, self.config, stats, self.predictor.network_context
        )
        if crop != image_box:  # a crop's embedding is of no further use; the whole image's may be
            self.predictor.reset_image()
        found = found.take(nms(found.boxes, found.iou, self.config.box_nms_thresh))
        return found.uncropped(crop, (pixels.shape[0], pixels.shape[1]))

    def _from_boxes(
        self, pixels: np.ndarray, boxes: BoxSource, detector: DetectorLike | None, phrases: Sequence[str]
    ) -> MaskSet:
        prompts = prompt_boxes(pixels, boxes, detector, phrases, self.config.max_box_prompts)
        stats = GenerationStats()
        found = MaskSet.empty(4)
        if len(prompts):
            image_box = (0, 0, pixels.shape[1], pixels.shape[0])
            with self.predictor.network_context():
                self.predictor.set_image(pixels)
                embedding = self.predictor.embedding
                found = decode_candidates(
                    self.model,
                    embedding,
                    prompts,
                    image_box,
                    image_box,
                    self.config,
                    stats,
                    self.predictor.network_context,
                )
            found = found.take(nms(found.boxes, found.iou, self.config.box_nms_thresh))
        stats.kept = len(found)
        self.stats = stats
        logger.debug("segment everything from boxes: %s", stats)
        return found

    # --- output --------------------------------------------------------------------------------------

    def _clean_regions(self, found: MaskSet) -> MaskSet:
        config = self.config
        iou_threshold = max(config.box_nms_thresh, config.crop_nms_thresh)
        return clean_small_regions(found, config.min_mask_region_area, iou_threshold)

    def _records(self, found: MaskSet) -> list[dict[str, Any]]:
        found = self._clean_regions(found)
        mode = self.config.output_mode
        records = []
        for i, compact in enumerate(found.masks):
            prompt = found.prompts[i]
            record = {
                "segmentation": _encode(compact, mode),
                "area": compact.area,
                "bbox": xyxy_to_xywh(found.boxes[i]).tolist(),
                "predicted_iou": float(found.iou[i]),
                "point_coords": [prompt.tolist() if len(prompt) == 2 else _centre(prompt)],
                "stability_score": float(found.stability[i]),
                "crop_box": xyxy_to_xywh(found.crop_boxes[i]).tolist(),
            }
            if len(prompt) == 4:
                record["prompt_box"] = prompt.tolist()
            records.append(record)
        return records


def _encode(mask: CompactMask, mode: str) -> np.ndarray | dict[str, Any]:
    """One mask in the requested output form."""
    if mode == "binary_mask":
        return mask.to_mask()
    height, width = mask.size
    counts = mask.rle_counts().tolist()
    if mode == "uncompressed_rle":
        return {"size": [height, width], "counts": counts}
    return counts_to_rle(counts, (height, width))


def _centre(box: np.ndarray) -> list[float]:
    return [float(box[0] + box[2]) / 2, float(box[1] + box[3]) / 2]


def _check_int(value: Any, name: str, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer ≥ {minimum}, got {value!r}")


def _differs(setting: Any, value: Any) -> bool:
    """Whether an individual setting passed beside ``config=`` differs from its default."""
    if setting.name == "point_grids":
        return value is not None
    return value != setting.default
