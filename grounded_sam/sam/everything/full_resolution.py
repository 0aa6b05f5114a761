"""Candidate masks at full resolution, computed only along their contours, scored and thresholded.

Used by segment everything between decoding and the box filters. A
:class:`~grounded_sam.sam.everything.tiled_logits.TiledCuts` of each chunk of low-res logits settles the
output tiles that lie surely inside or outside the mask and its ±offset cuts and computes only the others;
stability scores come from its exact counts and masks stay tiled (:class:`~grounded_sam.sam.everything.
tiled_mask.TiledMask`) until suppression has dropped most of them; masks with ragged contours everywhere are
upsampled whole, as the reference does (:mod:`~grounded_sam.sam.everything.whole_masks`), and masks whose
low-res extremes clear every threshold take no tiles (:mod:`~grounded_sam.sam.everything.triage`).
Scores and masks equal the reference's full upsampling up to pixels whose logit is within float rounding of
a threshold.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import numpy as np
import torch

from grounded_sam.sam import budgets
from grounded_sam.sam.everything.mask_ops import CompactMask
from grounded_sam.sam.everything.tiled_logits import TiledCuts, TileGrid, stability_from_counts
from grounded_sam.sam.everything.tiled_mask import TiledMask
from grounded_sam.sam.everything.whole_masks import WholeUpsampler
from grounded_sam.sam.modeling.sam import Sam
from grounded_sam.sam.predictor import ImageEmbedding

if TYPE_CHECKING:
    from grounded_sam.sam.everything.generator import EverythingConfig


class Upsampler:
    """Turns low-res candidate logits of one embedded image into stability scores and tiled masks."""

    def __init__(self, model: Sam, embedding: ImageEmbedding, config: EverythingConfig) -> None:
        height, width = embedding.features.shape[-2:]
        low_size = (4 * height, 4 * width)
        self.grid = TileGrid.of(low_size, model.image_size, embedding.input_size, embedding.original_size)
        self.whole = WholeUpsampler(model.image_size, embedding.input_size, embedding.original_size)
        # Per candidate: window extremes and settled tiles, about 32 bytes per tile.
        self.chunk = max(1, budgets.UPSAMPLE_CHUNK_BYTES // (32 * len(self.grid.rows) * len(self.grid.cols)))
        threshold, offset = model.mask_threshold, config.stability_score_offset
        self.cuts = (threshold + offset, threshold - offset, threshold)  # stability, then the mask
        self.stability_min = np.float32(config.stability_score_thresh)

    def stable_masks(
        self, low_res: torch.Tensor, selected: tuple[torch.Tensor, torch.Tensor]
    ) -> Iterator[tuple[int, np.float32, TiledMask | CompactMask]]:
        """(i, stability score, mask) of the candidates ``low_res[selected[0][i], selected[1][i]]`` (of
        (B, C, h, w) logits) that pass the stability filter, in order."""
        rows, tokens = selected
        for start in range(0, len(rows), self.chunk):
            picked = low_res[rows[start : start + self.chunk], tokens[start : start + self.chunk]]
            cuts = TiledCuts.of(self.grid, picked, self.cuts, self.whole)
            stability = stability_from_counts(cuts.counts)
            for offset, mask in enumerate(cuts.masks(self.grid)):
                if self.stability_min > 0 and not stability[offset] >= self.stability_min:
                    continue
                yield start + offset, stability[offset], mask
