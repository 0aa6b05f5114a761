"""Full-resolution mask logits computed only where a threshold cuts them: upsampling by tiles.

:func:`~grounded_sam.sam.everything.mask_ops.upsample_logits` (one or two bilinear resizes) is a separable
linear map, ``out = My @ low @ Mx.T``, whose rows are convex combinations of a few neighbouring low-res
logits. :class:`TileGrid` cuts the output into tiles of about one low-res cell each and keeps, per tile, the
window of low-res logits its pixels draw on and the weights (``My`` and ``Mx`` restricted to it). A tile
whose window lies clearly above a threshold is above it at every pixel, and likewise below; only the tiles
left in doubt, along a mask's contours, are computed (``Wy @ window @ Wx.T``), so a mask costs its contour's
length rather than its image's area.

The tiles' values equal ``upsample_logits``'s up to float rounding (one product of precomputed weights
instead of two rounded resizes), so a pixel may land on the other side of a threshold only where its logit
is within float rounding of it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import numpy as np
import torch
import torch.nn.functional as F

from grounded_sam.sam.everything.mask_ops import CompactMask
from grounded_sam.sam.everything.tile_boxes import tile_boxes
from grounded_sam.sam.everything.tiled_mask import TiledMask
from grounded_sam.sam.everything.triage import (
    DENSE_FRACTION,
    count_true,
    uniform_levels,
    upsampled_whole,
    widened,
)
from grounded_sam.sam.everything.whole_masks import WholeUpsampler

MAX_KERNEL_GROUPS = 64
"""Tiles are computed with one matrix product per pair of row and column weight patterns when the pairs
present are at most this many (whole-number scales have a handful), else with two small products per tile."""


@dataclass(frozen=True)
class AxisTiles:
    """One axis of :class:`TileGrid`: output indices in tiles of ``tile``, each with its low-res window.

    Attributes:
        starts: (G,) int64 first low-res index of each tile's window.
        pattern: (G,) int64 each tile's weights in :attr:`patterns` (tiles at the same phase share them).
        patterns: (P, tile, width) float32 weights of a window for each output index of a tile (NaN rows
            past the end of the axis, so padded pixels are never above any threshold).
        sizes: (G,) int64 output indices each tile really covers (``tile`` but for the last).
        tile: output indices per tile.
    """

    starts: np.ndarray
    pattern: np.ndarray
    patterns: torch.Tensor
    sizes: np.ndarray
    tile: int

    @classmethod
    def of(cls, low: int, square: int, used: int, final: int) -> AxisTiles:
        """The axis of ``upsample_logits``: ``low`` cells resized to ``square``, cut to the first ``used``,
        then resized to ``final`` (not at all when ``final == used``)."""
        matrix = resize_matrix(low, square, used, final)
        tile = max(1, int(final * square / (low * used)))  # output indices per low-res cell
        count = -(-final // tile)
        taps = matrix != 0
        groups = np.arange(final) // tile
        lo, hi = np.full(count, low, np.int64), np.zeros(count, np.int64)
        np.minimum.at(lo, groups, np.argmax(taps, axis=1))
        np.maximum.at(hi, groups, low - 1 - np.argmax(taps[:, ::-1], axis=1))
        width = int((hi - lo).max()) + 1
        starts = np.minimum(lo, low - width)
        padded = np.full((count * tile, low), np.nan)
        padded[:final] = matrix
        windows = np.repeat((starts[:, None] + np.arange(width))[:, None], tile, axis=1)  # (G, T, width)
        weights = np.take_along_axis(padded.reshape(count, tile, low), windows, axis=2).astype(np.float32)
        keys = np.nan_to_num(weights, nan=np.inf).reshape(count, -1)
        _, first, pattern = np.unique(keys, axis=0, return_index=True, return_inverse=True)
        sizes = np.minimum(tile, final - np.arange(count) * tile)
        patterns = torch.from_numpy(np.ascontiguousarray(weights[first]))
        return cls(starts, pattern.reshape(-1).astype(np.int64), patterns, sizes, tile)

    @property
    def width(self) -> int:
        """Low-res indices per window."""
        return int(self.patterns.shape[-1])

    def __len__(self) -> int:
        return len(self.starts)


def resize_matrix(low: int, square: int, used: int, final: int) -> np.ndarray:
    """(final, low) float64 matrix of one axis of ``upsample_logits``, made by resizing an identity with the
    same kernel (so its taps and weights are torch's)."""
    identity = torch.eye(low, dtype=torch.float64)[None, :, :, None]  # channel c: the unit vector e_c
    first = F.interpolate(identity, size=(square, 1), mode="bilinear", align_corners=False)[:, :, :used]
    if final != used:
        first = F.interpolate(first, size=(final, 1), mode="bilinear", align_corners=False)
    return first[0, :, :, 0].T.numpy()


@dataclass(frozen=True)
class TileGrid:
    """The tiles of ``upsample_logits(low_res, square, input_size, original_size)``'s output (H, W)."""

    rows: AxisTiles
    cols: AxisTiles
    size: tuple[int, int]
    square: int
    input_size: tuple[int, int]

    @classmethod
    def of(
        cls,
        low_size: tuple[int, int],
        square: int,
        input_size: tuple[int, int],
        original_size: tuple[int, int],
    ) -> TileGrid:
        rows = AxisTiles.of(low_size[0], square, input_size[0], original_size[0])
        cols = AxisTiles.of(low_size[1], square, input_size[1], original_size[1])
        size = (int(original_size[0]), int(original_size[1]))
        return cls(rows, cols, size, square, (int(input_size[0]), int(input_size[1])))

    @property
    def shape(self) -> tuple[int, int]:
        """(Gy, Gx) tiles."""
        return len(self.rows), len(self.cols)

    @property
    def tile(self) -> tuple[int, int]:
        """(Ty, Tx) pixels per tile."""
        return self.rows.tile, self.cols.tile

    def window_extremes(self, low_res: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(N, Gy, Gx) minimum and maximum of each tile's window of (N, h, w) low-res logits (NaN
        propagates)."""
        rows, cols = self.rows, self.cols
        used = low_res[:, : int(rows.starts.max()) + rows.width, : int(cols.starts.max()) + cols.width]
        low = _sliding(_sliding(used, rows, 1, torch.minimum), cols, 2, torch.minimum)
        high = _sliding(_sliding(used, rows, 1, torch.maximum), cols, 2, torch.maximum)
        return low, high

    def values(self, low_res: torch.Tensor, tiles: tuple[torch.Tensor, ...]) -> torch.Tensor:
        """(n, Ty * Tx) full-resolution logits (row-major in each tile) of the tiles ``(mask, tile row,
        tile column)`` (each (n,) int64) of (N, h, w) finite low-res logits; pixels outside the image are
        NaN. ``Wy @ window @ Wx.T`` per tile: one matrix product per pair of weight patterns
        (``kron(Wy, Wx)`` on the flattened windows) when the pairs are few (with the tiles sorted by pair
        unless one pair has most of them)."""
        masks, row, col = tiles
        rows, cols = self.rows, self.cols
        height, width = low_res.shape[1:]
        masks, row, col = masks.numpy(), row.numpy(), col.numpy()
        corner = (masks * height + rows.starts[row]) * width + cols.starts[col]  # flat index of each window
        offsets = (np.arange(rows.width)[:, None] * width + np.arange(cols.width)).ravel()
        row_pattern, col_pattern = rows.pattern[row], cols.pattern[col]
        pairs = row_pattern * len(cols.patterns) + col_pattern
        census = np.bincount(pairs)
        kinds = np.flatnonzero(census)
        if len(kinds) > MAX_KERNEL_GROUPS:
            picked = torch.from_numpy(np.take(low_res.numpy(), corner[:, None] + offsets))
            windows = picked.unflatten(1, (rows.width, cols.width))
            across = torch.bmm(windows, cols.patterns[col_pattern].transpose(1, 2))  # (n, ky, Tx)
            return torch.bmm(rows.patterns[row_pattern], across).flatten(1)
        if len(pairs) and 2 * census.max() >= len(pairs):  # one kernel for most: no sorting
            picked = torch.from_numpy(np.take(low_res.numpy(), corner[:, None] + offsets))  # (n, ky * kx)
            most = int(np.argmax(census))
            out = torch.mm(picked, self._kernel(most).T)
            others = np.flatnonzero(pairs != most)
            for kind in np.unique(pairs[others]).tolist():
                at = torch.from_numpy(others[pairs[others] == kind])
                out[at] = torch.mm(picked[at], self._kernel(kind).T)
            return out
        order = np.argsort(pairs, kind="stable")
        picked = torch.from_numpy(np.take(low_res.numpy(), corner[order][:, None] + offsets))
        bounds = [*np.searchsorted(pairs[order], kinds).tolist(), len(order)]
        ordered = low_res.new_empty((len(order), rows.tile * cols.tile))
        for kind, start, stop in zip(kinds.tolist(), bounds[:-1], bounds[1:], strict=True):
            torch.mm(picked[start:stop], self._kernel(kind).T, out=ordered[start:stop])
        out = torch.empty_like(ordered)
        out[torch.from_numpy(order)] = ordered
        return out

    def _kernel(self, kind: int) -> torch.Tensor:
        """(Ty * Tx, ky * kx) ``kron(Wy, Wx)`` of the pair of weight patterns ``kind``."""
        y, x = divmod(kind, len(self.cols.patterns))
        return (
            torch.einsum("ia,jb->ijab", self.rows.patterns[y], self.cols.patterns[x]).flatten(2).flatten(0, 1)
        )


def _sliding(
    values: torch.Tensor, axis: AxisTiles, dim: int, pick: Callable[..., torch.Tensor]
) -> torch.Tensor:
    """``pick`` (``torch.minimum`` or ``torch.maximum``) over each window of ``axis`` along ``dim`` of
    (CPU) ``values``: (..., n, ...) → (..., G, ...). Shifted slices, not pooling: several times faster."""
    length = values.shape[dim] - axis.width + 1
    out = values.narrow(dim, 0, length)
    for shift in range(1, axis.width):
        out = pick(out, values.narrow(dim, shift, length))
    return torch.from_numpy(np.take(out.numpy(), axis.starts, axis=dim))  # several times torch's gather


@dataclass(frozen=True)
class TiledCuts:
    """Low-res logits (N, h, w) cut at thresholds tile by tile: exact counts, and the last cut's masks.

    Attributes:
        counts: (N, K) int64 pixels of each upsampled mask above each threshold (NaN is above none).
        boxes: (N, 4) int64 XYXY boxes (far edge inclusive) of the last cut; (0, 0, 0, 0) if empty.
        full: (N, ceil(Gy * Gx / 8)) ``np.packbits`` of the tiles wholly above the last threshold.
        tiles: (n,) int64 mask, tile row and tile column of each tile in doubt (mask-major): the only
            tiles computed at full resolution.
        bits: (n, ceil(Ty * Tx / 8)) ``np.packbits`` of those tiles' pixels above the last threshold.
        whole: the masks upsampled whole instead, by index: those with a non-finite low-res logit (the
            windows, wider than a pixel's taps, would spread it) and those with more than
            :data:`DENSE_FRACTION` of their tiles in doubt or of their low-res neighbours across the
            mask's threshold (ragged contours everywhere: one bilinear pass costs less than the tiles'
            products, and the second test spares the tiles' analysis).
    """

    counts: np.ndarray
    boxes: np.ndarray
    full: np.ndarray
    tiles: tuple[np.ndarray, np.ndarray, np.ndarray]
    bits: np.ndarray
    whole: dict[int, CompactMask]

    @classmethod
    def of(
        cls,
        grid: TileGrid,
        low_res: torch.Tensor,
        thresholds: Sequence[float],
        whole: WholeUpsampler | None = None,
    ) -> TiledCuts:
        """Cut (N, h, w) low-res logits at ``thresholds`` (compared in float32, as torch compares float32
        tensors with Python numbers). Masks that clear every threshold everywhere (their extremes alone
        settle them) take no tiles at all; ``whole`` (made if None) upsamples the ragged ones."""
        low_res = low_res.float().cpu()
        levels = uniform_levels(low_res, thresholds)
        whole = whole or WholeUpsampler(grid.square, grid.input_size, grid.size)
        varied = np.flatnonzero((levels < 0).any(axis=1))
        ragged = upsampled_whole(low_res[torch.from_numpy(varied)], thresholds[-1], grid.tile)
        cuts = cls._uniform(grid, levels)
        if ragged.any():
            rows = varied[ragged]
            ragged_cuts = cls._whole(grid, low_res[torch.from_numpy(rows)], thresholds, levels[rows], whole)
            cuts = ragged_cuts._spread(cuts, rows)
        rows = varied[~ragged]
        if len(rows):
            cuts = cls._varied(grid, low_res[torch.from_numpy(rows)], thresholds, whole)._spread(cuts, rows)
        return cuts

    @classmethod
    def _varied(
        cls, grid: TileGrid, low_res: torch.Tensor, thresholds: Sequence[float], whole: WholeUpsampler
    ) -> TiledCuts:
        """:meth:`of` by tiles: the tiles settled by their windows' extremes are counted whole, the others
        computed; the masks over :data:`DENSE_FRACTION` in doubt go to ``whole``."""
        # numpy compares a float32 array with a float32 many times faster than torch
        low, high = widened(*(t.numpy() for t in grid.window_extremes(low_res)))
        cuts = np.float32(thresholds)
        above = [low > t for t in cuts]  # (N, Gy, Gx) each; NaN extremes are neither above
        doubts = [
            np.logical_not(np.logical_or(high <= t, surely)) for t, surely in zip(cuts, above, strict=True)
        ]
        doubt = np.logical_or.reduce(doubts)  # nor below: in doubt
        nonfinite = ~torch.isfinite(low_res.sum((1, 2))).numpy()  # a sum that overflows goes this way too
        in_doubt = count_true(torch.from_numpy(doubt).flatten(1), 1).numpy()
        dense = nonfinite | (in_doubt > DENSE_FRACTION * doubt[0].size)
        chosen = np.flatnonzero(dense)
        wanted = np.stack([d[chosen].any(axis=(1, 2)) for d in doubts], axis=1) | nonfinite[chosen, None]
        doubt &= ~dense[:, None, None]
        above = torch.from_numpy(np.stack(above, axis=1) & ~doubt[:, None])  # (N, K, Gy, Gx)
        tiles = tuple(torch.from_numpy(t) for t in doubt.nonzero())
        with torch.autocast("cpu", enabled=False):  # the caller's bfloat16 network context stops here
            values = grid.values(low_res, tiles).numpy()
        inside = [values > t for t in cuts]  # (n, Ty * Tx) bool each
        packed = [np.packbits(flags, axis=1) for flags in inside]
        counts = _settled_counts(above, grid)
        counts.index_add_(0, tiles[0], torch.from_numpy(np.stack([_popcount(p) for p in packed], axis=1)))
        boxes = tile_boxes(above[:, -1], tiles, inside[-1].reshape(-1, *grid.tile), grid.tile, grid.size)
        counts = counts.numpy()
        masks = {}
        if len(chosen):
            exact, boxes[chosen], found = whole.cut(low_res[torch.from_numpy(chosen)], thresholds, wanted)
            counts[chosen] = np.where(exact >= 0, exact, counts[chosen])
            masks = dict(zip(chosen.tolist(), found, strict=True))
        return cls(
            counts,
            boxes,
            np.packbits(above[:, -1].flatten(1).numpy(), axis=1),
            tuple(t.numpy() for t in tiles),  # type: ignore[arg-type]
            packed[-1],
            masks,
        )

    @classmethod
    def _uniform(cls, grid: TileGrid, levels: np.ndarray) -> TiledCuts:
        """Masks whose (N, K) ``levels`` are all 0 or 1: empty or whole at each threshold, no tiles."""
        (height, width), tiles = grid.size, np.zeros(0, dtype=np.int64)
        inside = levels[:, -1:] == 1
        full = np.packbits(np.ones(len(grid.rows) * len(grid.cols), dtype=bool))
        return cls(
            levels.astype(np.int64) * (height * width),
            np.where(inside, np.array([0, 0, width - 1, height - 1]), 0).astype(np.int64),
            np.where(inside, full, 0).astype(np.uint8),
            (tiles, tiles, tiles),
            np.zeros((0, -(-grid.tile[0] * grid.tile[1] // 8)), dtype=np.uint8),
            {},
        )

    @classmethod
    def _whole(
        cls,
        grid: TileGrid,
        low_res: torch.Tensor,
        thresholds: Sequence[float],
        levels: np.ndarray,
        whole: WholeUpsampler,
    ) -> TiledCuts:
        """Masks all upsampled whole; thresholds their (N, K) ``levels`` settle are not compared again."""
        counts, boxes, masks = whole.cut(low_res, thresholds, levels < 0)
        settled = cls._uniform(grid, levels)
        counts = np.where(counts >= 0, counts, settled.counts)
        return replace(settled, counts=counts, boxes=boxes, whole=dict(enumerate(masks)))

    def _spread(self, into: TiledCuts, rows: np.ndarray) -> TiledCuts:
        """``into`` with these cuts written at its ``rows`` (increasing)."""
        for name in ("counts", "boxes", "full"):
            getattr(into, name)[rows] = getattr(self, name)
        ours = (rows[self.tiles[0]], *self.tiles[1:])
        tiles = [np.concatenate(pair) for pair in zip(into.tiles, ours, strict=True)]
        order = np.argsort(tiles[0], kind="stable")  # mask-major again
        return TiledCuts(
            into.counts,
            into.boxes,
            into.full,
            tuple(t[order] for t in tiles),  # type: ignore[arg-type]
            np.concatenate([into.bits, self.bits])[order],
            {**into.whole, **{int(rows[i]): mask for i, mask in self.whole.items()}},
        )

    def masks(self, grid: TileGrid) -> list[TiledMask | CompactMask]:
        """The N masks cut at the last threshold."""
        offsets = np.searchsorted(self.tiles[0], np.arange(len(self.counts) + 1))
        places = np.stack(self.tiles[1:], axis=1)
        return [
            TiledMask(
                grid.size,
                tuple(int(v) for v in self.boxes[i]),  # type: ignore[arg-type]
                int(self.counts[i, -1]),
                grid.shape,
                grid.tile,
                self.full[i],
                places[offsets[i] : offsets[i + 1]],
                self.bits[offsets[i] : offsets[i + 1]],
            )
            if i not in self.whole
            else self.whole[i]
            for i in range(len(self.counts))
        ]


def _settled_counts(above: torch.Tensor, grid: TileGrid) -> torch.Tensor:
    """(N, K) int64 pixels of the (N, K, Gy, Gx) settled tiles: whole tiles, less what the last tile row
    and column lack."""
    tile_y, tile_x = grid.tile
    counts = count_true(above.flatten(2), -1) * (tile_y * tile_x)
    short_y, short_x = tile_y - int(grid.rows.sizes[-1]), tile_x - int(grid.cols.sizes[-1])
    if short_y:
        counts -= count_true(above[:, :, -1], -1) * short_y * tile_x
    if short_x:
        counts -= count_true(above[:, :, :, -1], -1) * short_x * tile_y
    if short_y and short_x:
        counts += above[:, :, -1, -1] * (short_y * short_x)
    return counts


def _popcount(packed: np.ndarray) -> np.ndarray:
    """(n,) int64 set bits of each row of (n, B) ``np.packbits`` output."""
    if not hasattr(np, "bitwise_count"):  # numpy < 2
        return np.unpackbits(packed, axis=1).sum(axis=1, dtype=np.int64)
    if packed.shape[1] % 8 == 0:
        packed = packed.view(np.uint64)  # a word at a time
    return np.bitwise_count(packed).sum(axis=1, dtype=np.int64)


def stability_from_counts(counts: np.ndarray) -> np.ndarray:
    """(N,) float32 stability scores from (N, 2+) counts above t + offset and above t - offset:
    |logits > t + offset| / |logits > t - offset|, the IoU of the masks cut at the two thresholds
    (segment-anything's definition); 0/0 gives NaN, which fails every threshold."""
    inner, outer = counts[:, 0].astype(np.float32), counts[:, 1].astype(np.float32)
    with np.errstate(invalid="ignore", divide="ignore"):
        return inner / outer
