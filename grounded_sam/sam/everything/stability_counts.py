"""Pixel counts of upsampled mask logits above a threshold, settled from the low-resolution logits.

:func:`~grounded_sam.sam.everything.mask_ops.upsample_logits` makes every full-resolution logit a convex
combination (one or two bilinear resizes) of a few neighbouring low-resolution logits. Where all the
low-res logits a group of output rows can draw on lie clearly above a threshold, so does every pixel of
those rows, and likewise below. :class:`UpsampleFootprint` records which low-res rows each output row can
draw on (one row more on each side, so rounding in the resize's index arithmetic cannot matter); a
:class:`Settlement` (or :func:`count_above`) counts the settled rows from the low-res logits alone and
reads the full-resolution logits only in the band of rows left in doubt. The counts are exact.

Stability scores threshold the logits one unit above and below the mask threshold, so only the rows a
mask's ±1 contours cross are read; the rows above and below the object are not.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

ROUNDING_MARGIN = 1e-5
"""A row group is settled when its low-res extremes clear the threshold by this fraction of their magnitude
(a bilinear value strays from the convex hull of its taps by a few float32 ulps at most)."""


@dataclass(frozen=True)
class AxisFootprint:
    """The low-res window every output index of one axis draws on, grouped into runs of equal windows.

    Attributes:
        starts: (G,) first low-res index of each group's window.
        edges: (G + 1,) output index where each group begins, then the axis length.
        width: low-res indices per window (the same for every group).
    """

    starts: np.ndarray
    edges: np.ndarray
    width: int

    @classmethod
    def of(cls, low: int, square: int, used: int, final: int) -> AxisFootprint:
        """Footprint of an axis resized from ``low`` cells to ``square``, cut to its first ``used``
        entries, then resized to ``final`` (as ``upsample_logits`` does)."""
        out = np.arange(final, dtype=np.float64)
        if final == used:
            first = last = out
        else:
            source = np.maximum((out + 0.5) * used / final - 0.5, 0.0)
            first = np.floor(source)
            last = np.minimum(first + 1, used - 1)

        def low_index(index: np.ndarray) -> np.ndarray:
            return np.floor(np.maximum((index + 0.5) * low / square - 0.5, 0.0)).astype(np.int64)

        lo = np.clip(low_index(first) - 1, 0, low - 1)
        hi = np.clip(low_index(last) + 2, 0, low - 1)  # the second bilinear tap, plus the margin
        width = int((hi - lo).max()) + 1
        starts = np.minimum(lo, low - width)  # still covers [lo, hi]: hi ≤ low - 1
        edges = np.concatenate([[0], np.flatnonzero(np.diff(starts)) + 1, [final]])
        return cls(starts[edges[:-1]], edges, width)

    @property
    def lengths(self) -> np.ndarray:
        """(G,) output indices per group."""
        return np.diff(self.edges)


@dataclass(frozen=True)
class UpsampleFootprint:
    """Row footprint and width of ``upsample_logits(low_res, square, input_size, original_size)``."""

    rows: AxisFootprint
    width: int

    @classmethod
    def of(
        cls,
        low_size: tuple[int, int],
        square: int,
        input_size: tuple[int, int],
        original_size: tuple[int, int],
    ) -> UpsampleFootprint:
        return cls(AxisFootprint.of(low_size[0], square, input_size[0], original_size[0]), original_size[1])


@dataclass(frozen=True)
class Settlement:
    """Which output row groups of each upsampled mask the low-res logits settle, per threshold.

    Attributes:
        values: the thresholds, rounded to the logits' dtype as torch compares tensors with numbers.
        above: (N, T, G) groups whose every pixel is surely above the threshold.
        doubtful: (N, T, G) groups surely neither above nor below: only these need full resolution.
        bands: (N, T, 2) groups [first, stop) from the first to the last doubtful one ([0, 0) if none).
    """

    values: tuple[float, ...]
    above: np.ndarray
    doubtful: np.ndarray
    bands: np.ndarray

    @classmethod
    def of(
        cls,
        low_res: torch.Tensor,
        thresholds: Sequence[float],
        footprint: UpsampleFootprint,
        dtype: torch.dtype = torch.float32,
    ) -> Settlement:
        """Settle (N, h, w) low-res logits, upsampled as ``footprint`` says, against ``thresholds``."""
        row_low, row_high = _group_extremes(low_res.amin(2), low_res.amax(2), footprint.rows)  # (N, G)
        values = tuple(float(torch.tensor(t, dtype=dtype)) for t in thresholds)
        settled = [_settle(row_low, row_high, value) for value in values]
        above = np.stack([a for a, _ in settled], axis=1)
        doubtful = np.stack([d for _, d in settled], axis=1)
        first = np.argmax(doubtful, axis=2)
        stop = doubtful.shape[2] - np.argmax(doubtful[..., ::-1], axis=2)
        bands = np.where(doubtful.any(axis=2)[..., None], np.stack([first, stop], axis=-1), 0)
        return cls(values, above, doubtful, bands)

    def spans(self, footprint: UpsampleFootprint) -> np.ndarray:
        """(N, T, 2) output rows [start, stop) of the :attr:`bands` (start = stop = 0 where no group is in
        doubt): the only rows :meth:`counts` and :meth:`threshold` read."""
        return footprint.rows.edges[self.bands]

    def counts(self, logits: torch.Tensor, footprint: UpsampleFootprint) -> np.ndarray:
        """(N, T) int64 exact counts of ``logits > threshold`` for (N, H, W) upsampled logits, read only in
        :meth:`spans`."""
        rows, width = footprint.rows, footprint.width
        settled = self.above * rows.lengths  # (N, T, G) rows surely above
        counts = settled.sum(axis=2) * width
        for i, j in zip(*np.nonzero(self.doubtful.any(axis=2)), strict=True):
            g0, g1 = self.bands[i, j]
            band = _count_greater(logits[i, rows.edges[g0] : rows.edges[g1]], self.values[j])
            counts[i, j] += band - int(settled[i, j, g0:g1].sum()) * width
        return counts

    def threshold(
        self, logits: torch.Tensor, index: int, out: np.ndarray, footprint: UpsampleFootprint
    ) -> None:
        """Write mask ``index``'s ``logits > threshold`` (the last threshold) into the (H, W) bool ``out``,
        reading ``logits`` (H, W) only in its :meth:`spans`."""
        rows = footprint.rows
        out[:] = False
        for group in np.flatnonzero(self.above[index, -1]):
            out[rows.edges[group] : rows.edges[group + 1]] = True
        start, stop = rows.edges[self.bands[index, -1]]
        if stop > start:
            # numpy thresholds a CPU array about three times faster than torch.gt.
            np.greater(logits[start:stop].cpu().numpy(), np.float32(self.values[-1]), out=out[start:stop])


def count_above(
    low_res: torch.Tensor,
    logits: torch.Tensor,
    thresholds: Sequence[float],
    footprint: UpsampleFootprint,
) -> np.ndarray:
    """Exact number of pixels of each upsampled mask above each threshold.

    Row groups whose every low-res tap lies clearly on one side of a threshold are counted from the
    low-res logits; only the band of rows between the first and the last unsettled group is counted at
    full resolution.

    Args:
        low_res: (N, h, w) low-resolution logits.
        logits: (N, H, W) the same masks upsampled by ``upsample_logits`` (read only where unsettled).
        thresholds: compared as the logits' dtype, as torch compares tensors with Python numbers.
        footprint: of that upsampling.

    Returns:
        (N, len(thresholds)) int64 counts of ``logits > threshold``.
    """
    return Settlement.of(low_res, thresholds, footprint, logits.dtype).counts(logits, footprint)


def stability_from_counts(counts: np.ndarray) -> np.ndarray:
    """(N,) float32 stability scores from (N, 2+) counts above t + offset and above t - offset:
    |logits > t + offset| / |logits > t - offset|, the IoU of the masks cut at the two thresholds
    (segment-anything's definition); 0/0 gives NaN, which fails every threshold."""
    inner, outer = counts[:, 0].astype(np.float32), counts[:, 1].astype(np.float32)
    with np.errstate(invalid="ignore", divide="ignore"):
        return inner / outer


def _count_greater(values: torch.Tensor, threshold: float) -> int:
    """Number of entries above ``threshold`` (numpy on a CPU: about three times faster than torch)."""
    if values.device.type == "cpu":
        return int(np.count_nonzero(values.numpy() > np.float32(threshold)))
    return int(torch.count_nonzero(values > threshold))


def _group_extremes(
    low: torch.Tensor, high: torch.Tensor, axis: AxisFootprint
) -> tuple[np.ndarray, np.ndarray]:
    """(..., n) extremes of each low-res row → (..., G) float64 extremes of each group's window."""
    low, high = low.double().cpu().numpy(), high.double().cpu().numpy()
    windows = np.arange(axis.width)
    return (
        low[..., axis.starts[:, None] + windows].min(axis=-1),
        high[..., axis.starts[:, None] + windows].max(axis=-1),
    )


def _settle(low: np.ndarray, high: np.ndarray, value: float) -> tuple[np.ndarray, np.ndarray]:
    """Groups whose every upsampled logit is surely above ``value``, and those not surely either way."""
    margin = ROUNDING_MARGIN * np.maximum(np.abs(low), np.abs(high)) + 1e-30
    above = low - margin > value
    return above, ~above & ~(high + margin <= value)  # written so that NaN extremes stay unsettled
