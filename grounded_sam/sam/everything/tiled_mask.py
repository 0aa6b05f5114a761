"""A mask kept as tiles: whole tiles set, plus the pixels of the tiles along its contour.

Segment everything keeps its candidates this way (:class:`~grounded_sam.sam.everything.tiled_logits.
TiledCuts` makes them) until non-maximum suppression has dropped most of them; only the survivors become
full (H, W) arrays.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from grounded_sam.sam.everything.mask_ops import CompactMask


@dataclass(frozen=True)
class TiledMask:
    """A bool mask of an (H, W) frame cut into a grid of equal tiles (the last row and column may reach
    past the frame).

    Same interface as :class:`~grounded_sam.sam.everything.mask_ops.CompactMask` (``size``, ``box``,
    ``area``, :meth:`to_mask`, :meth:`shifted`, :meth:`rle_counts`).

    Attributes:
        size: (H, W) of the frame.
        box: XYXY, far edge inclusive, in the frame; (0, 0, 0, 0) for an empty mask.
        area: number of set pixels.
        grid: (Gy, Gx) tiles.
        tile: (Ty, Tx) pixels per tile.
        full: ``np.packbits`` of the (Gy, Gx) bool tiles that are wholly set.
        places: (m, 2) int (tile row, tile column) of the contour tiles.
        bits: (m, ceil(Ty * Tx / 8)) ``np.packbits`` of each contour tile's (Ty, Tx) pixels, row-major.
        origin: XY of the tile grid's corner in the frame (non-zero once :meth:`shifted`).
    """

    size: tuple[int, int]
    box: tuple[int, int, int, int]
    area: int
    grid: tuple[int, int]
    tile: tuple[int, int]
    full: np.ndarray
    places: np.ndarray
    bits: np.ndarray
    origin: tuple[int, int] = (0, 0)

    def to_mask(self) -> np.ndarray:
        """The (H, W) bool mask."""
        (rows, cols), (tile_h, tile_w) = self.grid, self.tile
        if self.area == 0:
            return np.zeros(self.size, dtype=bool)
        frame = np.empty((rows, tile_h, cols, tile_w), dtype=bool)  # row-major pixels, unlike a tile stack
        frame[...] = np.unpackbits(self.full, count=rows * cols).view(bool).reshape(rows, 1, cols, 1)
        pixels = np.unpackbits(self.bits, axis=1, count=tile_h * tile_w).view(bool)
        frame[self.places[:, 0], :, self.places[:, 1]] = pixels.reshape(-1, tile_h, tile_w)
        tiled = frame.reshape(rows * tile_h, cols * tile_w)
        if self.origin == (0, 0) and tiled.shape == self.size:
            return tiled
        mask = np.zeros(self.size, dtype=bool)
        x0, y0 = self.origin
        height, width = min(tiled.shape[0], self.size[0] - y0), min(tiled.shape[1], self.size[1] - x0)
        mask[y0 : y0 + height, x0 : x0 + width] = tiled[:height, :width]
        return mask

    def shifted(self, dx: int, dy: int, size: tuple[int, int]) -> TiledMask:
        """The same mask moved by (dx, dy) into a frame of ``size`` (H, W) that contains it."""
        if self.area == 0:
            return replace(self, size=size)
        x0, y0, x1, y1 = self.box
        if x0 + dx < 0 or y0 + dy < 0 or x1 + dx >= size[1] or y1 + dy >= size[0]:
            raise ValueError(f"box {self.box} moved by ({dx}, {dy}) leaves a frame of size {size}")
        box = (x0 + dx, y0 + dy, x1 + dx, y1 + dy)
        return replace(self, size=size, box=box, origin=(self.origin[0] + dx, self.origin[1] + dy))

    def rle_counts(self) -> np.ndarray:
        """Uncompressed COCO RLE counts of the whole frame (int64)."""
        return CompactMask.from_mask(self.to_mask(), self.box if self.area else None).rle_counts()
