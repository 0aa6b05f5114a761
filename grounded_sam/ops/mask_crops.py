"""Compact masks for large images: each mask kept as the bool array of its own tight box.

An (N, H, W) stack costs N x H x W bytes: 24 MB per mask on a 6000x4000 image, whatever the object's
size. `MaskCrops` holds the same masks in the sum of their boxes' areas; tiled prediction builds one and
`Result` keeps it until someone asks for the dense stack. Boxes follow the package convention (XYXY,
far edge exclusive; see :mod:`grounded_sam.ops`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True, eq=False)
class MaskCrops:
    """N masks of an (H, W) image.

    Attributes:
        crops: N bool arrays; crop i is mask i inside rows top..top+h, columns left..left+w.
        offsets: (N, 2) int64 (top, left) of each crop in image pixels.
        image_size: (H, W) of the image.
    """

    crops: tuple[np.ndarray, ...]
    offsets: np.ndarray
    image_size: tuple[int, int]

    def __post_init__(self) -> None:
        offsets = np.asarray(self.offsets, dtype=np.int64).reshape(-1, 2)
        if len(offsets) != len(self.crops):
            raise ValueError(f"offsets must have shape ({len(self.crops)}, 2); got {offsets.shape}")
        h, w = self.image_size
        for crop, (top, left) in zip(self.crops, offsets, strict=True):
            if crop.dtype != bool or crop.ndim != 2:
                raise ValueError(f"each crop must be a 2-D bool array; got {crop.dtype} {crop.shape}")
            if top < 0 or left < 0 or top + crop.shape[0] > h or left + crop.shape[1] > w:
                raise ValueError(f"crop {crop.shape} at (top, left) {(top, left)} leaves the {h}x{w} image")
        object.__setattr__(self, "offsets", offsets)
        object.__setattr__(self, "image_size", (int(h), int(w)))

    @classmethod
    def from_windows(cls, masks: np.ndarray, window: Sequence[int], image_size: tuple[int, int]) -> MaskCrops:
        """(N, h, w) bool masks of the window (x0, y0, x1, y1) of an (H, W) image, each cut to its
        tight box; only the crops are copied."""
        x0, y0 = int(window[0]), int(window[1])
        crops, offsets = [], []
        for mask in np.asarray(masks, dtype=bool):
            rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
            if len(rows) == 0:
                crops.append(np.zeros((0, 0), dtype=bool))
                offsets.append((y0, x0))
                continue
            r0, r1, c0, c1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
            crops.append(np.ascontiguousarray(mask[r0:r1, c0:c1]))
            offsets.append((y0 + r0, x0 + c0))
        return cls(tuple(crops), np.array(offsets, dtype=np.int64).reshape(-1, 2), image_size)

    @classmethod
    def from_dense(cls, masks: np.ndarray) -> MaskCrops:
        """(N, H, W) bool masks cut to their tight boxes."""
        masks = np.asarray(masks, dtype=bool)
        return cls.from_windows(masks, (0, 0), masks.shape[1:])

    @classmethod
    def empty(cls, image_size: tuple[int, int]) -> MaskCrops:
        return cls((), np.zeros((0, 2), dtype=np.int64), image_size)

    @classmethod
    def concat(cls, parts: Sequence[MaskCrops]) -> MaskCrops:
        """The masks of several `MaskCrops` of one image size, in order."""
        sizes = {p.image_size for p in parts}
        if len(sizes) != 1:
            raise ValueError(f"cannot concat masks of different image sizes: {sorted(sizes)}")
        crops = tuple(c for p in parts for c in p.crops)
        return cls(crops, np.concatenate([p.offsets for p in parts]), parts[0].image_size)

    def __len__(self) -> int:
        return len(self.crops)

    def select(self, indices: np.ndarray) -> MaskCrops:
        """The masks at the (K,) int `indices`, in that order."""
        picked = [int(i) for i in indices]
        return MaskCrops(tuple(self.crops[i] for i in picked), self.offsets[picked], self.image_size)

    def mask(self, i: int) -> np.ndarray:
        """Mask i as an (H, W) bool array."""
        out = np.zeros(self.image_size, dtype=bool)
        self.paste(i, out)
        return out

    def paste(self, i: int, out: np.ndarray, value: Any = True) -> None:
        """Set the pixels of mask i in the (H, W) array `out` to `value`."""
        (top, left), crop = self.offsets[i], self.crops[i]
        region = out[top : top + crop.shape[0], left : left + crop.shape[1]]
        region[crop] = value

    def dense(self) -> np.ndarray:
        """(N, H, W) bool: every mask at full size."""
        out = np.zeros((len(self), *self.image_size), dtype=bool)
        for i in range(len(self)):
            self.paste(i, out[i])
        return out

    def areas(self) -> np.ndarray:
        """(N,) int64 pixel count of each mask."""
        return np.array([int(c.sum()) for c in self.crops], dtype=np.int64)

    def boxes(self) -> np.ndarray:
        """(N, 4) float32 XYXY tight box of each mask (far edge exclusive); empty masks give zeros.

        Crops built by `from_windows` are tight; a crop given directly is trimmed here."""
        out = np.zeros((len(self), 4), dtype=np.float32)
        for i, ((top, left), crop) in enumerate(zip(self.offsets, self.crops, strict=True)):
            rows, cols = np.flatnonzero(crop.any(axis=1)), np.flatnonzero(crop.any(axis=0))
            if len(rows):
                out[i] = (left + cols[0], top + rows[0], left + cols[-1] + 1, top + rows[-1] + 1)
        return out

    def nbytes(self) -> int:
        """Bytes held by the crops."""
        return sum(c.nbytes for c in self.crops)

    def counts(self, i: int) -> np.ndarray:
        """Uncompressed COCO RLE counts (column-major run lengths, zeros first) of mask i at full size,
        computed from its crop alone."""
        height, width = self.image_size
        (top, left), crop = self.offsets[i], self.crops[i]
        edges = np.diff(np.pad(crop, ((1, 1), (0, 0))).astype(np.int8), axis=0).T  # (w, h + 1)
        col_s, row_s = np.nonzero(edges == 1)  # column-major order: by column, then row
        col_e, row_e = np.nonzero(edges == -1)
        starts = (left + col_s) * height + top + row_s
        ends = (left + col_e) * height + top + row_e
        bounds = np.stack([starts, ends], axis=1).ravel()
        # a run ending at the bottom of a column may continue at the top of the next one: join them
        joined = np.flatnonzero(bounds[2::2] == bounds[1:-1:2])
        bounds = np.delete(bounds, np.concatenate([2 * joined + 1, 2 * joined + 2]))
        if len(bounds) and bounds[-1] == height * width:
            bounds = bounds[:-1]  # pycocotools writes no empty run of zeros at the end
        return np.diff(np.concatenate([[0], bounds, [height * width]])).astype(np.int64)
