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
    low, high = widened(flat.amin(1).numpy()[:, None], flat.amax(1).numpy()[:, None])
    cuts = np.asarray(thresholds, dtype=np.float32)
    return np.where(low > cuts, 1, np.where(high <= cuts, 0, -1)).astype(np.int8)


def widened(low: np.ndarray, high: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """float32 extremes ``low`` <= ``high`` (same shape) pushed apart by :data:`ROUNDING_MARGIN` of their
    magnitude, so that every convex combination of the values between them lies inside."""
    margin = np.maximum(high, -low) * np.float32(ROUNDING_MARGIN) + np.float32(1e-30)
    return low - margin, high + margin


MIN_TILE_PIXELS = 16
"""Output pixels per tile (one low-res cell) below which every mask is upsampled whole: the tiles' analysis
costs more than the bilinear pass then. Demo model (128-px logits), one thread, ms per mask tiled / whole:
256 x 256 (2 x 2 tiles) 0.74 / 0.18, 384 x 384 (3 x 3) 1.12 / 0.46, 512 x 512 (4 x 4) 0.81 / 0.72,
640 x 640 (5 x 5) 0.94 / 1.03, 768 x 1024 (8 x 8) 0.58 / 2.08."""


def upsampled_whole(low_res: torch.Tensor, threshold: float, tile: tuple[int, int]) -> np.ndarray:
    """(N,) bool: which of the (N, h, w) low-res logits to upsample whole rather than by tiles of ``tile``
    (Ty, Tx) pixels: all when the tiles are small (:data:`MIN_TILE_PIXELS`), else the ragged ones."""
    if tile[0] * tile[1] < MIN_TILE_PIXELS:
        return np.ones(len(low_res), dtype=bool)
    return ragged_masks(low_res, threshold)


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
