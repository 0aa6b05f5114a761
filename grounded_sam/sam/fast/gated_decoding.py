"""Segment everything's decoding in two stages: predicted IoUs first, masks only for prompts that can pass.

:func:`decode_gated` runs on an accelerated model (:func:`grounded_sam.sam.fast.accelerate`): the IoU gate
(:mod:`~grounded_sam.sam.fast.iou_gate`) predicts every prompt's IoUs without its image tokens, and only
the prompts near or above the threshold go through the staged mask decoder, a pass of prompts at a time.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from grounded_sam.sam import budgets
from grounded_sam.sam.fast.iou_gate import gate_ious, supports_gate
from grounded_sam.sam.fast.mask_decoder import FastMaskDecoder, Workspace, prompts_per_pass
from grounded_sam.sam.fast.transformer import ImageTokens
from grounded_sam.sam.modeling.sam import Sam

GATE_MARGIN = 1e-3
"""Prompts whose gated IoU comes within this of the threshold are decoded by the staged decoder too (the gate
rounds differently, by about 1e-7)."""

GATE_PAYS_BELOW = 0.5
"""The gate runs on every prompt only when less than this fraction of a probe of them comes near the
threshold: gating costs about as much as the staged decoder's attention (0.9x on the demo model), so it
pays only when it spares most prompts that attention (the demo's loose grid spares none)."""


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
    of the threshold go through the staged decoder, whose IoUs are the ones returned for them (so the
    result does not depend on the gate's rounding).

    Args:
        features: (1, C, h, w) image embedding, shared by every prompt.
        points: coords (B, 1, 2) XY in the resized-input frame and labels (B, 1); three masks each.
        boxes: (B, 4) XYXY in the resized-input frame; one mask each (used when ``points`` is None).
        iou_thresh: prompts with no predicted IoU above it are not upscaled (≤ 0: all are).
        workspace: memory for the upscaling, kept by a caller that decodes batch after batch of one image
            (it also keeps the first batch's finding on whether gating pays).

    Returns:
        IoUs (B, C) float32 numpy, the R prompt rows that were upscaled (numpy int) and their low-res
        logits (R, C, 4h, 4w), C = 3 for points and 1 for boxes.
    """
    prompt_encoder = model.prompt_encoder
    multimask = points is not None
    sparse, dense = prompt_encoder(points=points, boxes=None if multimask else boxes, masks=None)
    image_pe, workspace = prompt_encoder.get_dense_pe(), workspace or Workspace()
    image = model.mask_decoder.image_tokens(
        features, image_pe, dense, len(sparse) >= budgets.SHARED_PROJECTIONS_MIN_PROMPTS
    )
    staged = _StagedDecoder(model.mask_decoder, features, image, multimask, workspace)
    # workspace.gate_pays is False: an earlier batch's probe found that gating does not pay.
    ungated = iou_thresh <= 0 or len(sparse) == 0 or workspace.gate_pays is False
    if ungated or not supports_gate(staged.decoder, features):
        return staged.decode(sparse, iou_thresh)
    # A spread-out probe of the prompts is gated first: when most of it comes near the threshold (loose
    # thresholds), gating the rest would cost nearly what it saves, and they go straight to the decoder.
    step = budgets.GATE_PROMPTS
    probe = np.arange(len(sparse))[:: max(1, len(sparse) // step)][:step]
    gated = np.full((len(sparse), 3 if multimask else 1), np.inf, np.float32)  # inf: decode it
    gated[probe] = _gate(staged, sparse, probe)
    rest = np.setdiff1d(np.arange(len(sparse)), probe)
    near_threshold = np.float32(iou_thresh - GATE_MARGIN)
    if workspace.gate_pays is None:
        workspace.gate_pays = bool((gated[probe] > near_threshold).any(axis=1).mean() < GATE_PAYS_BELOW)
    if len(rest) and workspace.gate_pays:
        gated[rest] = np.concatenate(
            [_gate(staged, sparse, rest[i : i + step]) for i in range(0, len(rest), step)]
        )
    near = np.flatnonzero((gated > near_threshold).any(axis=1))
    iou, rows, low_res = staged.decode(sparse[torch.from_numpy(near).to(features.device)], iou_thresh)
    gated[near] = iou
    return gated, near[rows], low_res


def _gate(staged: _StagedDecoder, sparse: torch.Tensor, prompts: np.ndarray) -> np.ndarray:
    """:func:`~grounded_sam.sam.fast.iou_gate.gate_ious` of the prompts at indices ``prompts`` (numpy)."""
    chosen = sparse[torch.from_numpy(prompts).to(sparse.device)]
    return gate_ious(staged.decoder, staged.image, chosen, staged.multimask).float().cpu().numpy()


@dataclass(frozen=True)
class _StagedDecoder:
    """The staged mask decoder on prompts against one image embedding (1, C, h, w), a pass at a time."""

    decoder: FastMaskDecoder
    features: torch.Tensor
    image: ImageTokens
    multimask: bool
    workspace: Workspace

    def decode(self, sparse: torch.Tensor, iou_thresh: float) -> tuple[np.ndarray, np.ndarray, torch.Tensor]:
        """:func:`decode_gated`'s result for prompt tokens (B, K, C), :func:`prompts_per_pass` at a time.

        The logits of every pass are written into one (B, C, 4h, 4w) buffer, of which the rows kept are
        returned (a prefix: no copy)."""
        step = prompts_per_pass(self.features)
        masks = 3 if self.multimask else 1
        ious, rows = [np.zeros((0, masks), np.float32)], [np.zeros(0, np.int64)]
        height, width = self.features.shape[-2:]
        low_res = self.features.new_empty((len(sparse), masks, 4 * height, 4 * width))
        kept = 0
        for start in range(0, len(sparse), step):
            iou, passed = self._decode_pass(sparse[start : start + step], iou_thresh, low_res[kept:])
            ious.append(iou)
            rows.append(passed + start)
            kept += len(passed)
        return np.concatenate(ious), np.concatenate(rows), low_res[:kept].float()

    def _decode_pass(
        self, sparse: torch.Tensor, iou_thresh: float, out: torch.Tensor
    ) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`decode` for one pass of prompts: IoUs and the rows kept, whose logits go to the first
        rows of ``out``."""
        decoder, features, multimask = self.decoder, self.features, self.multimask
        state = decoder.attend_blocks(self.image, sparse)
        final = decoder.transformer.final_attention
        if iou_thresh > 0:
            # The IoU head reads only the IoU token, whose final attention does not depend on the others;
            # the mask tokens' is made only for the prompts that pass.
            iou = decoder.iou_from_tokens(final(state, slice(0, 1)), multimask).float().cpu().numpy()
            rows = np.flatnonzero((iou > np.float32(iou_thresh)).any(axis=1))
            if len(rows) < len(iou):
                state = state.take(torch.from_numpy(rows).to(features.device))
            mask_tokens = final(state, decoder.mask_tokens_read(multimask))
        else:
            tokens = final(state, decoder.output_tokens(multimask))  # the other tokens are never read
            iou = decoder.iou_from_tokens(tokens, multimask).float().cpu().numpy()
            rows, mask_tokens = np.arange(len(iou)), tokens[:, 1:]
        image_tokens = state.keys.expand(len(rows), -1, -1)
        grid = (features.shape[-2], features.shape[-1])
        decoder.masks_of(mask_tokens, image_tokens, grid, multimask, self.workspace, out[: len(rows)])
        return iou, rows
