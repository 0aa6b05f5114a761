"""Which way a candidate mask's full-resolution cuts are computed, decided from its low-res logits alone.

Every full-resolution logit is a convex combination of low-res logits (bilinear resizes), so it lies
between their extremes up to float rounding: a mask whose extremes clear a threshold is wholly on one side
of it (:func:`uniform_levels`). A mask that crosses a threshold between many neighbouring low-res logits
has contours everywhere (:func:`ragged_masks`): upsampled whole rather than tile by tile.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

ROUNDING_MARGIN = 1e-5
"""A tile is settled when its window's extremes clear the threshold by this fraction of their magnitude (a
convex combination strays from the hull of its terms by a few float32 ulps at most)."""

DENSE_FRACTION = 0.25
"""A mask with more than this fraction of its tiles in doubt, or of its low-res neighbours across the mask's
threshold, is upsampled whole (:class:`~grounded_sam.sam.everything.tiled_logits.TiledCuts`)."""


def uniform_levels(low_res: torch.Tensor, thresholds: Sequence[float]) -> np.ndarray:
    """(N, K) int8 per mask of (N, h, w) logits and threshold: 1 if its every upsampled pixel is surely above
    the threshold, 0 if surely not, -1 if some may be either (NaN: -1). Upsampled pixels are convex
    combinations of low-res logits, so the logits' extremes settle this, with :data:`ROUNDING_MARGIN`."""
    flat = low_res.flatten(1)
    low, high = flat.amin(1), flat.amax(1)
    margin = ROUNDING_MARGIN * torch.maximum(low.abs(), high.abs()) + 1e-30
    low, high = (low - margin).numpy()[:, None], (high + margin).numpy()[:, None]
    cuts = np.asarray(thresholds, dtype=np.float32)
    return np.where(low > cuts, 1, np.where(high <= cuts, 0, -1)).astype(np.int8)


def ragged_masks(low_res: torch.Tensor, threshold: float) -> np.ndarray:
    """(N,) bool: the (N, h, w) low-res logits cross ``threshold`` between more than :data:`DENSE_FRACTION`
    of their horizontal neighbours, in every fourth row (a crossing puts several tiles in doubt, so the
    tiles of such a mask would not pay; a sample of rows tells contours everywhere)."""
    above = low_res[:, ::4].numpy() > np.float32(threshold)  # numpy: many times faster than torch here
    crossings = count_true(torch.from_numpy(above[:, :, 1:] != above[:, :, :-1]).flatten(1), 1).numpy()
    return crossings > DENSE_FRACTION * above.shape[1] * above.shape[2]


def count_true(flags: torch.Tensor, dim: int) -> torch.Tensor:
    """int64 number of True ``flags`` along ``dim`` (bytes summed as int32: faster than a bool sum)."""
    return flags.view(torch.uint8).sum(dim, dtype=torch.int32).long()
