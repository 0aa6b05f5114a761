"""Candidate masks at full resolution: upsampled in chunks into one reused buffer, scored, thresholded.

Used by segment everything between decoding and the box filters.
A :class:`~grounded_sam.sam.everything.stability_counts.Settlement` of
each chunk's low-res logits tells which output rows
are surely inside or outside the mask and its ±offset cuts; stability counts and binary masks read the
full-resolution logits only in the rows left in doubt. Those are all that is upsampled when no second
resize follows (an image whose longer side is the encoder's input size), and nothing is when no row of a
chunk is in doubt. Every result equals the full computation's bit for bit.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import numpy as np
import torch

from grounded_sam.sam import budgets
from grounded_sam.sam.everything.mask_ops import rows_exact, upsample_logits, upsample_rows
from grounded_sam.sam.everything.stability_counts import Settlement, UpsampleFootprint, stability_from_counts
from grounded_sam.sam.modeling.sam import Sam
from grounded_sam.sam.predictor import ImageEmbedding

if TYPE_CHECKING:
    from grounded_sam.sam.everything.generator import EverythingConfig


class Upsampler:
    """Turns low-res candidate logits of one embedded image into stability scores and binary masks."""

    def __init__(self, model: Sam, embedding: ImageEmbedding, config: EverythingConfig) -> None:
        side = model.image_size
        device = embedding.features.device
        low_size = (4 * embedding.features.shape[-2], 4 * embedding.features.shape[-1])
        self.side, self.input_size, self.size = side, embedding.input_size, embedding.original_size
        self.chunk = max(1, budgets.UPSAMPLE_CHUNK_BYTES // (4 * side * side))
        self.logits = torch.empty(self.chunk, 1, side, side, device=device)
        self.binary = np.empty(self.size, dtype=bool)
        self.footprint = UpsampleFootprint.of(low_size, side, self.input_size, self.size)
        threshold, offset = model.mask_threshold, config.stability_score_offset
        self.cuts = (threshold + offset, threshold - offset, threshold)  # stability, then the mask
        self.stability_min = np.float32(config.stability_score_thresh)
        # Rows can be upsampled alone when no second resize follows and the scale keeps them exact.
        self.by_rows = tuple(self.input_size) == tuple(self.size) and rows_exact(low_size[0], side)

    def stable_masks(
        self, low_res: torch.Tensor, selected: tuple[torch.Tensor, torch.Tensor]
    ) -> Iterator[tuple[int, np.float32, np.ndarray]]:
        """(i, stability score, (H, W) bool mask) of the candidates ``low_res[selected[0][i],
        selected[1][i]]`` (of (B, C, h, w) logits) that pass the stability filter, in order.

        The mask array is a view of a buffer that the next step overwrites: use it before going on.
        """
        rows, tokens = selected
        for start in range(0, len(rows), self.chunk):
            picked = low_res[rows[start : start + self.chunk], tokens[start : start + self.chunk]]
            settlement = Settlement.of(picked, self.cuts, self.footprint)
            logits = self._upsample(picked, settlement)
            stability = stability_from_counts(settlement.counts(logits, self.footprint))
            for offset in range(len(picked)):
                if self.stability_min > 0 and not stability[offset] >= self.stability_min:
                    continue
                settlement.threshold(logits[offset], offset, self.binary, self.footprint)
                yield start + offset, stability[offset], self.binary

    def _upsample(self, picked: torch.Tensor, settlement: Settlement) -> torch.Tensor:
        """(N, H, W) full-resolution logits of the (N, h, w) ``picked``, exact at least in the rows the
        settlement leaves in doubt (a chunk with none is not upsampled at all)."""
        spans = settlement.spans(self.footprint)  # (N, T, 2)
        doubt = spans[..., 1] > spans[..., 0]
        buffer = self.logits[: len(picked)]
        if self.by_rows:
            for i in np.flatnonzero(doubt.any(axis=1)):
                band = (int(spans[i, doubt[i], 0].min()), int(spans[i, doubt[i], 1].max()))
                upsample_rows(picked[i], self.side, band, buffer[i, 0])
        elif doubt.any():
            return upsample_logits(picked[:, None], self.side, self.input_size, self.size, out=buffer)[:, 0]
        return buffer[:, 0, : self.size[0], : self.size[1]]
