"""Candidate masks from prompts: staged decoding, filters, and the columnar set the generator keeps.

The steps of :class:`~grounded_sam.sam.everything.MaskGenerator` between the image embedding and
non-maximum suppression, written to skip work without changing any result:

* :func:`decode_prompts` decodes a batch of prompts; on an accelerated model in two stages
  (:mod:`~grounded_sam.sam.fast.gated_decoding`), skipping the upscaling branch (the costly, per-prompt
  part) of prompts none of whose masks passes the predicted-IoU filter;
* :func:`decode_candidates` upsamples the IoU survivors a few at a time (:class:`~grounded_sam.sam.
  full_resolution.Upsampler`) and, mask by mask, keeps the stable ones' box and a bit-packed copy;
  full-resolution logits never pile up.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING

import numpy as np
import torch

from grounded_sam.ops.boxes import nms
from grounded_sam.sam.everything import mask_ops
from grounded_sam.sam.everything.batch_workers import map_batches, worker_count
from grounded_sam.sam.everything.full_resolution import Upsampler
from grounded_sam.sam.everything.mask_ops import CompactMask
from grounded_sam.sam.everything.tiled_mask import TiledMask
from grounded_sam.sam.fast import is_accelerated
from grounded_sam.sam.fast.gated_decoding import decode_gated
from grounded_sam.sam.fast.mask_decoder import Workspace
from grounded_sam.sam.modeling.sam import Sam
from grounded_sam.sam.predictor import ImageEmbedding
from grounded_sam.sam.transforms import scale_boxes, scale_coords

if TYPE_CHECKING:
    from grounded_sam.sam.everything.generator import EverythingConfig


@dataclass
class GenerationStats:
    """How many prompts and masks went through each stage of a ``generate*`` call.

    Attributes:
        prompts: points (or boxes) decoded.
        upscaled_prompts: prompts whose mask branch ran (the others had no mask above the IoU filter).
        candidates: masks predicted (three per point, one per box).
        above_iou: masks past the predicted-IoU filter (upsampled to full resolution).
        stable: masks past the stability filter.
        before_nms: masks past the crop-edge filter, i.e. entering non-maximum suppression.
        kept: masks after the last suppression (before small-region cleaning).
    """

    prompts: int = 0
    upscaled_prompts: int = 0
    candidates: int = 0
    above_iou: int = 0
    stable: int = 0
    before_nms: int = 0
    kept: int = 0

    def add(self, other: GenerationStats) -> None:
        """Add ``other``'s counts to these (``kept`` included)."""
        for field in fields(self):
            setattr(self, field.name, getattr(self, field.name) + getattr(other, field.name))


@dataclass(frozen=True, eq=False)
class MaskSet:
    """Columnar set of N candidate masks and what the generator knows about each.

    Attributes:
        masks: N compact masks, all in one frame.
        boxes: (N, 4) int64 XYXY, far edge inclusive, in that frame.
        iou: (N,) float32 predicted IoU.
        stability: (N,) float32 stability score.
        prompts: (N, 2) float64 XY prompt points, or (N, 4) XYXY prompt boxes, in that frame.
        crop_boxes: (N, 4) int64 XYXY (far edge exclusive) crop each mask was predicted in.
    """

    masks: tuple[CompactMask | TiledMask, ...]
    boxes: np.ndarray
    iou: np.ndarray
    stability: np.ndarray
    prompts: np.ndarray
    crop_boxes: np.ndarray

    @classmethod
    def empty(cls, prompt_dim: int = 2) -> MaskSet:
        return cls(
            (),
            np.zeros((0, 4), np.int64),
            np.zeros(0, np.float32),
            np.zeros(0, np.float32),
            np.zeros((0, prompt_dim), np.float64),
            np.zeros((0, 4), np.int64),
        )

    @classmethod
    def concat(cls, sets: list[MaskSet], prompt_dim: int = 2) -> MaskSet:
        """All masks of ``sets``, in order (the frames must agree)."""
        if not sets:
            return cls.empty(prompt_dim)
        return cls(
            tuple(m for s in sets for m in s.masks),
            np.concatenate([s.boxes for s in sets]),
            np.concatenate([s.iou for s in sets]),
            np.concatenate([s.stability for s in sets]),
            np.concatenate([s.prompts for s in sets]),
            np.concatenate([s.crop_boxes for s in sets]),
        )

    def __len__(self) -> int:
        return len(self.masks)

    def take(self, index: np.ndarray) -> MaskSet:
        """The masks at the (K,) int ``index``, in that order."""
        index = np.asarray(index, dtype=np.int64)
        return MaskSet(
            tuple(self.masks[i] for i in index),
            self.boxes[index],
            self.iou[index],
            self.stability[index],
            self.prompts[index],
            self.crop_boxes[index],
        )

    def uncropped(self, crop_box: tuple[int, int, int, int], size: tuple[int, int]) -> MaskSet:
        """Move masks, boxes and prompts from the frame of ``crop_box`` into the image of ``size`` (H, W)."""
        x0, y0 = crop_box[:2]
        offset = np.array([x0, y0] * (self.prompts.shape[1] // 2), dtype=np.float64)
        return MaskSet(
            tuple(m.shifted(x0, y0, size) for m in self.masks),
            self.boxes + np.array([x0, y0, x0, y0], dtype=np.int64),
            self.iou,
            self.stability,
            self.prompts + offset,
            self.crop_boxes,
        )


def decode_prompts(
    model: Sam,
    features: torch.Tensor,
    points: tuple[torch.Tensor, torch.Tensor] | None,
    boxes: torch.Tensor | None,
    iou_thresh: float,
    workspace: Workspace | None = None,
) -> tuple[np.ndarray, np.ndarray, torch.Tensor]:
    """IoUs (B, C) of point (three masks each) or box (one each) prompts, the rows with an IoU above
    ``iou_thresh`` (all when ≤ 0) and their low-res logits (R, C, 4h, 4w): through
    :func:`~grounded_sam.sam.fast.gated_decoding.decode_gated` when the model is accelerated, else one
    plain ``Sam.decode``."""
    if is_accelerated(model):
        return decode_gated(model, features, points, boxes, iou_thresh, workspace)
    multimask = points is not None
    low_res, iou = model.decode(
        features, points=points, boxes=None if multimask else boxes, multimask_output=multimask
    )
    ious = iou.float().cpu().numpy()
    rows = (
        np.flatnonzero((ious > np.float32(iou_thresh)).any(axis=1))
        if iou_thresh > 0
        else np.arange(len(ious))
    )
    return ious, rows, low_res[torch.from_numpy(rows).to(low_res.device)].float()


def decode_candidates(
    model: Sam,
    embedding: ImageEmbedding,
    prompts: np.ndarray,
    crop: tuple[int, int, int, int],
    image_box: tuple[int, int, int, int],
    config: EverythingConfig,
    stats: GenerationStats,
    network_context: Callable[[], AbstractContextManager[object]],
) -> MaskSet:
    """Masks of (P, 2) XY point prompts (three each) or (P, 4) XYXY box prompts (one each), given in
    the pixels of the embedded crop, that pass the IoU, stability and crop-edge filters.

    Prompts are decoded ``config.points_per_batch`` at a time, on a CPU several batches at once (see
    :mod:`~grounded_sam.sam.everything.batch_workers`),
    each inside ``network_context()``; the result is in the
    crop's frame, in the reference's order (prompt by prompt, then mask by mask). ``stats`` is updated.
    """
    step = config.points_per_batch
    batches = [prompts[start : start + step] for start in range(0, len(prompts), step)]
    workers = worker_count(embedding.features.device, len(batches))
    decoded = map_batches(
        lambda: _BatchDecoder(model, embedding, crop, image_box, config), batches, workers, network_context
    )
    for _, batch_stats in decoded:
        stats.add(batch_stats)
    return MaskSet.concat([found for found, _ in decoded], prompts.shape[1])


class _BatchDecoder:
    """Decodes batches of prompts against one embedded crop, in buffers of its own (one per thread)."""

    def __init__(
        self,
        model: Sam,
        embedding: ImageEmbedding,
        crop: tuple[int, int, int, int],
        image_box: tuple[int, int, int, int],
        config: EverythingConfig,
    ) -> None:
        self.model, self.embedding, self.crop, self.image_box, self.config = (
            model,
            embedding,
            crop,
            image_box,
            config,
        )
        self.upsampler, self.workspace = Upsampler(model, embedding, config), Workspace()

    def __call__(self, batch: np.ndarray) -> tuple[MaskSet, GenerationStats]:
        """The surviving masks of one batch of prompts, and its counts."""
        embedding, side, config = self.embedding, self.model.image_size, self.config
        device = embedding.features.device
        if batch.shape[1] == 2:
            coords = scale_coords(torch.from_numpy(batch), embedding.original_size, side).to(device)
            labels = torch.ones(len(batch), 1, dtype=torch.int, device=device)
            points, boxes = (coords[:, None], labels), None
        else:
            points, boxes = (
                None,
                scale_boxes(torch.from_numpy(batch), embedding.original_size, side).to(device),
            )
        decoded = decode_prompts(
            self.model, embedding.features, points, boxes, config.pred_iou_thresh, self.workspace
        )
        stats = GenerationStats()
        found = _filter(self.upsampler, *decoded, batch, self.crop, self.image_box, config, stats)
        return found, stats


def _filter(
    upsampler: Upsampler,
    iou: np.ndarray,
    rows: np.ndarray,
    low_res: torch.Tensor,
    prompts: np.ndarray,
    crop: tuple[int, int, int, int],
    image_box: tuple[int, int, int, int],
    config: EverythingConfig,
    stats: GenerationStats,
) -> MaskSet:
    """IoU filter on the (B, C) ``iou``, then per survivor (its logits are in ``low_res`` at its
    prompt's position in ``rows``): upsample, stability filter, threshold, box, crop-edge filter."""
    if config.pred_iou_thresh > 0:
        passed = iou > np.float32(config.pred_iou_thresh)
    else:
        passed = np.ones(iou.shape, dtype=bool)
    prompt_ids, token_ids = np.nonzero(passed)  # prompt-major, as the reference flattens
    row_of = np.full(len(prompts), -1)
    row_of[rows] = np.arange(len(rows))
    selected = (torch.from_numpy(row_of[prompt_ids]), torch.from_numpy(token_ids))
    picked, stabilities, masks, boxes = [], [], [], []
    for index, stability, mask in upsampler.stable_masks(low_res, selected):
        picked.append(index)
        stabilities.append(stability)
        masks.append(mask)
        boxes.append(mask.box)
    box_array = np.array(boxes, dtype=np.int64).reshape(-1, 4)
    inside = np.flatnonzero(~mask_ops.box_near_crop_edge(box_array, crop, image_box))
    index = np.array(picked, dtype=np.int64)[inside]
    stats.add(GenerationStats(len(prompts), len(rows), iou.size, len(prompt_ids), len(picked), len(inside)))
    return MaskSet(
        tuple(masks[i] for i in inside),
        box_array[inside],
        iou[prompt_ids[index], token_ids[index]],
        np.array(stabilities, dtype=np.float32)[inside],
        prompts[prompt_ids[index]].astype(np.float64),
        np.tile(np.asarray(crop, dtype=np.int64), (len(inside), 1)),
    )


def clean_small_regions(found: MaskSet, min_area: int, iou_threshold: float) -> MaskSet:
    """Fill holes and drop islands smaller than ``min_area`` pixels in every mask, then suppress the
    duplicates this creates at box IoU ``iou_threshold``, preferring masks that did not change."""
    if min_area <= 0 or len(found) == 0:
        return found
    masks, boxes, untouched = list(found.masks), found.boxes.copy(), []
    for i, compact in enumerate(found.masks):
        mask, holes = mask_ops.remove_small_regions(compact.to_mask(), min_area, "holes")
        mask, islands = mask_ops.remove_small_regions(mask, min_area, "islands")
        untouched.append(float(not (holes or islands)))
        if holes or islands:
            masks[i] = CompactMask.from_mask(mask)
            boxes[i] = masks[i].box
    # Suppression compares the boxes of the masks as they now are (an empty mask's is all zeros).
    current = np.array([m.box for m in masks], dtype=np.int64)
    keep = nms(current, torch.as_tensor(untouched), iou_threshold)
    return MaskSet(tuple(masks), boxes, found.iou, found.stability, found.prompts, found.crop_boxes).take(
        keep
    )
