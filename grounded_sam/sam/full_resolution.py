"""Candidate masks at full resolution: upsampled in chunks into one reused buffer, scored, thresholded.

Used by segment everything between decoding and the box filters. Stability scores come from
:func:`~grounded_sam.sam.settled_counts.stability_scores` (exact, reading full-resolution logits only near the
±offset contours); the binary mask of each stable candidate is thresholded into one reused buffer too.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import numpy as np
import torch

from grounded_sam.sam.mask_ops import upsample_logits
from grounded_sam.sam.predictor import ImageEmbedding
from grounded_sam.sam.sam import Sam
from grounded_sam.sam.settled_counts import UpsampleFootprint, stability_scores

if TYPE_CHECKING:
    from grounded_sam.sam.everything import EverythingConfig

CHUNK_BYTES = 32 << 20
"""Float logits upsampled at once (the buffer's size, before the second resize of a non-square image)."""


class Upsampler:
    """Turns low-res candidate logits of one embedded image into stability scores and binary masks."""

    def __init__(self, model: Sam, embedding: ImageEmbedding, config: EverythingConfig) -> None:
        side = model.image_size
        device = embedding.features.device
        low_size = (4 * embedding.features.shape[-2], 4 * embedding.features.shape[-1])
        self.side, self.input_size, self.size = side, embedding.input_size, embedding.original_size
        self.chunk = max(1, CHUNK_BYTES // (4 * side * side))
        self.logits = torch.empty(self.chunk, 1, side, side, device=device)
        self.binary = np.empty(self.size, dtype=bool)
        self.footprint = UpsampleFootprint.of(low_size, side, self.input_size, self.size)
        self.mask_threshold = model.mask_threshold
        self.binary_threshold = np.float32(model.mask_threshold)  # as torch compares float32 logits
        self.offset = config.stability_score_offset
        self.stability_min = np.float32(config.stability_score_thresh)

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
            buffer = self.logits[: len(picked)]
            logits = upsample_logits(picked[:, None], self.side, self.input_size, self.size, out=buffer)[:, 0]
            stability = stability_scores(picked, logits, self.mask_threshold, self.offset, self.footprint)
            for offset in range(len(picked)):
                if self.stability_min > 0 and not stability[offset] >= self.stability_min:
                    continue
                # numpy thresholds a CPU array about three times faster than torch.gt.
                np.greater(logits[offset].cpu().numpy(), self.binary_threshold, out=self.binary)
                yield start + offset, stability[offset], self.binary
