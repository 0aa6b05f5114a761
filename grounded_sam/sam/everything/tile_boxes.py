"""Tight boxes of masks kept as tiles (:class:`~grounded_sam.sam.everything.tiled_logits.TiledCuts`): from
the whole tiles and the pixels of the contour tiles, without assembling any mask."""

from __future__ import annotations

import numpy as np
import torch


def tile_boxes(
    full: torch.Tensor,
    tiles: tuple[torch.Tensor, ...],
    bits: np.ndarray,
    tile: tuple[int, int],
    size: tuple[int, int],
) -> np.ndarray:
    """(N, 4) int64 XYXY boxes (far edge inclusive; zeros if empty) of masks made of the (N, Gy, Gx) ``full``
    tiles and the (n, Ty, Tx) bool ``bits`` of the tiles ``(mask, tile row, tile column)`` (mask-major)."""
    masks, row, col = (t.numpy() for t in tiles)
    (tile_y, tile_x), (height, width) = tile, size
    full = full.numpy()
    # Whole tiles: the first and last tile row (column) holding one; the last may reach past the frame.
    full_rows, full_cols = full.any(axis=2), full.any(axis=1)
    starts = [_first(full_rows, tile_y), _first(full_cols, tile_x)]
    stops = [_last(full_rows, tile_y, tile_y - 1), _last(full_cols, tile_x, tile_x - 1)]
    rows, cols = _hits(bits)
    offsets = np.searchsorted(masks, np.arange(len(full) + 1))
    segments = offsets[:-1][offsets[1:] > offsets[:-1]]  # first tile of each mask that has some
    with_tiles = np.flatnonzero(offsets[1:] > offsets[:-1])
    for axis, (hits, place, size) in enumerate(((rows, row, tile_y), (cols, col, tile_x))):
        first, last = _first(hits, 1, place * size), _last(hits, 1, place * size)
        if len(segments):
            starts[axis][with_tiles] = np.minimum(
                starts[axis][with_tiles], np.minimum.reduceat(first, segments)
            )
            stops[axis][with_tiles] = np.maximum(stops[axis][with_tiles], np.maximum.reduceat(last, segments))
    boxes = np.stack(
        [starts[1], starts[0], np.minimum(stops[1], width - 1), np.minimum(stops[0], height - 1)], 1
    )
    boxes[stops[0] < 0] = 0
    return boxes


_NONE = 1 << 40
"""First index of a row of flags with none set (larger than any); its last index is -1."""


def _first(flags: np.ndarray, scale: int, offset: np.ndarray | int = 0) -> np.ndarray:
    """(M,) int64 ``offset + scale * i`` for the first set flag i of each row of (M, L) bool flags
    (:data:`_NONE` for a row with none)."""
    return np.where(flags.any(axis=1), offset + scale * np.argmax(flags, axis=1), _NONE).astype(np.int64)


def _last(flags: np.ndarray, scale: int, offset: np.ndarray | int = 0) -> np.ndarray:
    """(M,) int64 ``offset + scale * i`` for the last set flag i of each row of (M, L) bool flags (-1 for a
    row with none)."""
    last = flags.shape[1] - 1 - np.argmax(flags[:, ::-1], axis=1)
    return np.where(flags.any(axis=1), offset + scale * last, -1).astype(np.int64)


def _hits(pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows (n, Ty) and columns (n, Tx) of (n, Ty, Tx) bool tiles that hold a set pixel. A row of 1, 2, 4
    or 8 pixels is read as one integer (many times faster than a reduction over so short an axis)."""
    count, _, tile_x = pixels.shape
    if tile_x not in (1, 2, 4, 8) or count == 0:
        return pixels.any(axis=2), pixels.any(axis=1)
    words = np.ascontiguousarray(pixels).view(np.uint8).view(f"u{tile_x}")[..., 0]  # (n, Ty)
    columns = np.bitwise_or.reduce(words, axis=1)  # (n,): a column's byte is set if any row's is
    return words != 0, columns.view(np.uint8).reshape(count, tile_x) != 0
