"""Candidate masks from prompts: staged decoding, filters, and the columnar set the generator keeps.

The steps of :class:`~grounded_sam.sam.everything.MaskGenerator` between the image embedding and
non-maximum suppression, written to skip work without changing any result:

* :func:`decode_gated` runs the mask decoder in two stages and skips the upscaling branch (the costly,
  per-prompt part) of prompts none of whose masks passes the predicted-IoU filter: the IoU head only
  reads the output tokens;
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
from grounded_sam.sam.everything.iou_gate import GATE_PROMPTS, gate_ious, supports_gate
from grounded_sam.sam.everything.mask_ops import CompactMask
from grounded_sam.sam.modeling.mask_decoder import MaskDecoder, Workspace, prompts_per_pass
from grounded_sam.sam.modeling.sam import Sam
from grounded_sam.sam.modeling.transformer import PROJECTIONS_PAY_FROM, ImageTokens
from grounded_sam.sam.predictor import ImageEmbedding
from grounded_sam.sam.transforms import scale_boxes, scale_coords

if TYPE_CHECKING:
    from grounded_sam.sam.everything.generator import EverythingConfig


GATE_MARGIN = 1e-3
"""Prompts whose gated IoU comes within this of the threshold are decoded by the plain path too (the gate
rounds differently, by about 1e-7)."""


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

    masks: tuple[CompactMask, ...]
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


def decode_gated(
    model: Sam,
    features: torch.Tensor,
    points: tuple[torch.Tensor, torch.Tensor] | None,
    boxes: torch.Tensor | None,
    iou_thresh: float,
    workspace: Workspace | None = None,
) -> tuple[np.ndarray, np.ndarray, torch.Tensor]:
    """``Sam.decode`` in two stages, skipping the mask branch of prompts no mask of which can pass.

    With a filter and SAM's two-block transformer, :func:`~grounded_sam.sam.everything.iou_gate.gate_ious`
    first predicts every prompt's IoUs without its image tokens; only prompts within :data:`GATE_MARGIN`
    of the threshold go through the plain decoder, whose IoUs are the ones returned for them (so the
    result does not depend on the gate's rounding).

    Args:
        features: (1, C, h, w) image embedding, shared by every prompt.
        points: coords (B, 1, 2) XY in the resized-input frame and labels (B, 1); three masks each.
        boxes: (B, 4) XYXY in the resized-input frame; one mask each (used when ``points`` is None).
        iou_thresh: prompts with no predicted IoU above it are not upscaled (≤ 0: all are).
        workspace: memory for the upscaling, kept by a caller that decodes batch after batch.

    Returns:
        IoUs (B, C) float32 numpy, the R prompt rows that were upscaled (numpy int) and their low-res
        logits (R, C, 4h, 4w), C = 3 for points and 1 for boxes.
    """
    prompt_encoder = model.prompt_encoder
    multimask = points is not None
    sparse, dense = prompt_encoder(points=points, boxes=None if multimask else boxes, masks=None)
    image_pe, workspace = prompt_encoder.get_dense_pe(), workspace or Workspace()
    image = model.mask_decoder.image_tokens(features, image_pe, dense, len(sparse) >= PROJECTIONS_PAY_FROM)
    plain = _PlainDecoder(model.mask_decoder, features, image, multimask, workspace)
    if iou_thresh <= 0 or len(sparse) == 0 or not supports_gate(plain.decoder, features):
        return plain.decode(sparse, iou_thresh)
    gated = np.concatenate(
        [
            gate_ious(plain.decoder, image, sparse[start : start + GATE_PROMPTS], multimask)
            .float()
            .cpu()
            .numpy()
            for start in range(0, len(sparse), GATE_PROMPTS)
        ]
    )
    near = np.flatnonzero((gated > np.float32(iou_thresh - GATE_MARGIN)).any(axis=1))
    iou, rows, low_res = plain.decode(sparse[torch.from_numpy(near).to(features.device)], iou_thresh)
    gated[near] = iou
    return gated, near[rows], low_res


@dataclass(frozen=True)
class _PlainDecoder:
    """The mask decoder run the usual way on prompts against one image embedding (1, C, h, w)."""

    decoder: MaskDecoder
    features: torch.Tensor
    image: ImageTokens
    multimask: bool
    workspace: Workspace

    def decode(self, sparse: torch.Tensor, iou_thresh: float) -> tuple[np.ndarray, np.ndarray, torch.Tensor]:
        """:func:`decode_gated`'s result for prompt tokens (B, K, C), :func:`prompts_per_pass` at a time."""
        step = prompts_per_pass(self.features)
        masks = 3 if self.multimask else 1
        ious, rows = [np.zeros((0, masks), np.float32)], [np.zeros(0, np.int64)]
        height, width = self.features.shape[-2:]
        low_res = [self.features.new_zeros((0, masks, 4 * height, 4 * width))]
        for start in range(0, len(sparse), step):
            iou, kept, logits = self._decode_pass(sparse[start : start + step], iou_thresh)
            ious.append(iou)
            rows.append(kept + start)
            low_res.append(logits)
        return np.concatenate(ious), np.concatenate(rows), torch.cat(low_res).float()

    def _decode_pass(
        self, sparse: torch.Tensor, iou_thresh: float
    ) -> tuple[np.ndarray, np.ndarray, torch.Tensor]:
        """:meth:`decode` for one pass of prompts."""
        decoder, features, multimask = self.decoder, self.features, self.multimask
        state = decoder.attend_blocks(self.image, sparse)
        read = decoder.output_tokens(multimask)  # the prompt tokens' final attention is never read
        if iou_thresh > 0:
            # The IoU head reads only the IoU token, whose final attention does not depend on the others.
            iou = decoder.iou_from_tokens(decoder.transformer.final_attention(state, slice(0, 1)), multimask)
            iou = iou.float().cpu().numpy()
            rows = np.flatnonzero((iou > np.float32(iou_thresh)).any(axis=1))
            if len(rows) < len(iou):
                state = state.take(torch.from_numpy(rows).to(features.device))
            tokens = decoder.transformer.final_attention(state, read)
        else:
            tokens = decoder.transformer.final_attention(state, read)
            iou = decoder.iou_from_tokens(tokens, multimask).float().cpu().numpy()
            rows = np.arange(len(iou))
        image_tokens = state.keys.expand(len(rows), -1, -1)
        grid = (features.shape[-2], features.shape[-1])
        low_res = decoder.masks_from_tokens(tokens, image_tokens, grid, multimask, self.workspace)
        return iou, rows, low_res


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
        decoded = decode_gated(
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
    for index, stability, binary in upsampler.stable_masks(low_res, selected):
        box = mask_ops.mask_box(binary)
        picked.append(index)
        stabilities.append(stability)
        masks.append(CompactMask.from_mask(binary, box))
        boxes.append(box or (0, 0, 0, 0))
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
