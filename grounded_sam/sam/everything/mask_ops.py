"""Pure helpers for "segment everything": point grids, crop boxes, stability, boxes, compact masks, RLE.

Conventions: images and masks are (H, W); points are XY; boxes are XYXY with the far edge *inclusive*
(the last covered column / row, as in segment-anything's automatic mask generator) unless a docstring
says otherwise; an empty mask has the box (0, 0, 0, 0). RLE counts are COCO's uncompressed counts:
run lengths in column-major (Fortran) order, starting with a run of zeros (which may be empty).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from itertools import product
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F

__all__ = [
    "CompactMask",
    "box_near_crop_edge",
    "counts_to_mask",
    "crop_boxes",
    "layer_point_grids",
    "mask_box",
    "point_grid",
    "remove_small_regions",
    "rle_counts",
    "upsample_logits",
]


def point_grid(n_per_side: int) -> np.ndarray:
    """(n², 2) float64 XY cell centres of an n × n grid over the unit square, x varying fastest."""
    if n_per_side < 1:
        raise ValueError(f"a point grid needs at least one point per side, got {n_per_side}")
    half_cell = 1 / (2 * n_per_side)
    axis = np.linspace(half_cell, 1 - half_cell, n_per_side)
    xs, ys = np.meshgrid(axis, axis, indexing="xy")
    return np.stack([xs.ravel(), ys.ravel()], axis=1)


def layer_point_grids(n_per_side: int, n_layers: int, downscale: int) -> list[np.ndarray]:
    """One unit-square grid per crop layer 0..n_layers; layer i has ``int(n / downscale**i)`` per side."""
    return [point_grid(int(n_per_side / downscale**layer)) for layer in range(n_layers + 1)]


def crop_boxes(
    image_size: tuple[int, int], n_layers: int, overlap_ratio: float
) -> tuple[list[tuple[int, int, int, int]], list[int]]:
    """Crop boxes (XYXY, far edge exclusive) and their layer index: the whole image, then per layer i≥1
    a 2^i × 2^i grid of overlapping crops, listed column by column (x0 outer, y0 inner).

    Crops of layer i overlap by ``int(overlap_ratio * short_side * 2 / 2^i)`` pixels.
    """
    height, width = image_size
    boxes: list[tuple[int, int, int, int]] = [(0, 0, width, height)]
    layers = [0]
    for layer in range(1, n_layers + 1):
        per_side = 2**layer
        overlap = int(overlap_ratio * min(height, width) * (2 / per_side))
        crop_w = math.ceil((overlap * (per_side - 1) + width) / per_side)
        crop_h = math.ceil((overlap * (per_side - 1) + height) / per_side)
        starts_x = [int((crop_w - overlap) * i) for i in range(per_side)]
        starts_y = [int((crop_h - overlap) * i) for i in range(per_side)]
        for x0, y0 in product(starts_x, starts_y):
            boxes.append((x0, y0, min(x0 + crop_w, width), min(y0 + crop_h, height)))
            layers.append(layer)
    return boxes, layers


def upsample_logits(
    low_res: torch.Tensor,
    square: int,
    input_size: tuple[int, int],
    original_size: tuple[int, int],
) -> torch.Tensor:
    """(N, C, 4h, 4w) low-res logits → (N, C, H, W) at ``original_size``, as ``Sam.postprocess_masks``.

    Bilinear to the encoder's ``square`` input, drop the padding beyond ``input_size``, bilinear to the
    original size. When ``input_size == original_size`` the second resize is skipped: at scale 1 the
    bilinear weights are exactly (1, 0), so it would return its input bit for bit. Segment everything
    computes only the parts of it it needs (:class:`~grounded_sam.sam.everything.tiled_logits.TileGrid`).
    """
    logits = F.interpolate(low_res, [square, square], mode="bilinear", align_corners=False)
    logits = logits[..., : input_size[0], : input_size[1]]
    if tuple(input_size) == tuple(original_size):
        return logits
    return F.interpolate(logits, original_size, mode="bilinear", align_corners=False)


def mask_box(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    """Tight XYXY box (far edge inclusive) of an (H, W) bool mask, or ``None`` if it is empty."""
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(mask.any(axis=0))
    return int(cols[0]), int(rows[0]), int(cols[-1]), int(rows[-1])


def box_near_crop_edge(
    boxes: np.ndarray,
    crop_box: tuple[int, int, int, int],
    image_box: tuple[int, int, int, int],
    atol: float = 20.0,
) -> np.ndarray:
    """(N, 4) boxes in the crop's frame → (N,) bool: some side lies within ``atol`` pixels of a crop
    edge that is not also an edge of the whole image (such masks are probably cut off by the crop)."""
    x0, y0 = crop_box[:2]
    shifted = np.asarray(boxes, dtype=np.float64) + np.array([x0, y0, x0, y0], dtype=np.float64)
    near_crop = np.abs(shifted - np.asarray(crop_box, dtype=np.float64)) <= atol
    near_image = np.abs(shifted - np.asarray(image_box, dtype=np.float64)) <= atol
    return (near_crop & ~near_image).any(axis=1)


def remove_small_regions(
    mask: np.ndarray, min_area: float, mode: Literal["holes", "islands"]
) -> tuple[np.ndarray, bool]:
    """Fill holes (``"holes"``) or drop islands (``"islands"``) smaller than ``min_area`` pixels in an
    (H, W) bool mask, with 8-connectivity; returns the mask and whether it changed. If every island is
    small, the largest one is kept."""
    import cv2

    if mode not in ("holes", "islands"):
        raise ValueError(f"mode must be 'holes' or 'islands', got {mode!r}")
    holes = mode == "holes"
    # Components of the holes (background) or of the islands (foreground); label 0 is the rest.
    target = (~mask if holes else mask).astype(np.uint8)
    count, labels, stats, _ = cv2.connectedComponentsWithStats(target, connectivity=8)
    sizes = stats[1:, cv2.CC_STAT_AREA]
    small = np.flatnonzero(sizes < min_area) + 1
    if small.size == 0:
        return mask, False
    lookup = np.zeros(count, dtype=bool)
    if holes:
        lookup[0] = True  # the original foreground
        lookup[small] = True
    else:
        lookup[1:] = sizes >= min_area
        if not lookup.any():
            lookup[int(np.argmax(sizes)) + 1] = True
    return lookup[labels], True


def rle_counts(mask: np.ndarray) -> np.ndarray:
    """(H, W) bool mask → int64 uncompressed COCO RLE counts (column-major, zeros first).

    Only the mask's bounding box is scanned, so the cost follows the object, not the image.
    """
    mask = np.asarray(mask, dtype=bool)
    box = mask_box(mask)
    if box is None:
        return np.array([mask.size], dtype=np.int64)
    x0, y0, x1, y1 = box
    return _box_counts(mask[y0 : y1 + 1, x0 : x1 + 1], (x0, y0), mask.shape)


def _box_counts(window: np.ndarray, origin: tuple[int, int], size: tuple[int, int]) -> np.ndarray:
    """RLE counts of a frame of ``size`` (H, W) that is zero except ``window`` placed at XY ``origin``."""
    height = size[0]
    win_h, win_w = window.shape
    # Each window column with a zero row above and below, so no run crosses from one column to the next.
    padded = np.zeros((win_w, win_h + 2), dtype=np.int8)
    padded[:, 1:-1] = window.T
    col, pos = np.nonzero(np.diff(padded, axis=1))  # edge between pos and pos + 1 → first row `pos`
    # Position in the frame of each run start (rising edge) and run end (falling edge, exclusive).
    edges = (col + origin[0]).astype(np.int64) * height + (pos + origin[1])
    starts, ends = edges[0::2], edges[1::2]
    # A run ending at the bottom of one column and one starting at the top of the next are one run.
    joined = ends[:-1] == starts[1:]
    starts = starts[np.concatenate([[True], ~joined])]
    ends = ends[np.concatenate([~joined, [True]])]
    bounds = np.empty(2 * starts.size + 2, dtype=np.int64)
    bounds[0], bounds[-1] = 0, size[0] * size[1]
    bounds[1:-1:2], bounds[2:-1:2] = starts, ends
    counts = np.diff(bounds)
    # COCO counts end with the last run: no empty run of zeros after a mask that reaches the last pixel.
    return counts[:-1] if counts[-1] == 0 else counts


def counts_to_mask(counts: np.ndarray | list[int], size: tuple[int, int]) -> np.ndarray:
    """Uncompressed COCO RLE counts → (H, W) bool mask (C-ordered)."""
    counts = np.asarray(counts, dtype=np.int64)
    height, width = size
    if counts.sum() != height * width:
        raise ValueError(f"RLE counts add up to {counts.sum()}, not {height}×{width} = {height * width}")
    values = np.arange(counts.size) % 2 == 1
    return np.repeat(values, counts).reshape(width, height).T.copy()


@dataclass(frozen=True)
class CompactMask:
    """A bool mask stored as the bit-packed contents of its bounding box.

    Attributes:
        size: (H, W) of the frame.
        box: XYXY, far edge inclusive, in the frame; (0, 0, 0, 0) for an empty mask.
        bits: ``np.packbits`` of the (y1 - y0 + 1, x1 - x0 + 1) window (empty for an empty mask).
        area: number of set pixels.
    """

    size: tuple[int, int]
    box: tuple[int, int, int, int]
    bits: np.ndarray
    area: int

    @classmethod
    def from_mask(cls, mask: np.ndarray, box: tuple[int, int, int, int] | None = None) -> CompactMask:
        """Pack an (H, W) bool mask; ``box`` may pass its already known tight box (None: computed)."""
        size = (int(mask.shape[0]), int(mask.shape[1]))
        box = mask_box(mask) if box is None else box
        if box is None:
            return cls(size, (0, 0, 0, 0), np.zeros(0, dtype=np.uint8), 0)
        window = mask[box[1] : box[3] + 1, box[0] : box[2] + 1]
        return cls(size, box, np.packbits(window), int(np.count_nonzero(window)))

    @property
    def window(self) -> np.ndarray:
        """The (y1 - y0 + 1, x1 - x0 + 1) bool contents of the box (0 × 0 if empty)."""
        if self.area == 0:
            return np.zeros((0, 0), dtype=bool)
        x0, y0, x1, y1 = self.box
        shape = (y1 - y0 + 1, x1 - x0 + 1)
        return np.unpackbits(self.bits, count=shape[0] * shape[1]).view(bool).reshape(shape)

    def to_mask(self) -> np.ndarray:
        """The (H, W) bool mask."""
        mask = np.zeros(self.size, dtype=bool)
        if self.area:
            x0, y0, x1, y1 = self.box
            mask[y0 : y1 + 1, x0 : x1 + 1] = self.window
        return mask

    def shifted(self, dx: int, dy: int, size: tuple[int, int]) -> CompactMask:
        """The same mask moved by (dx, dy) into a frame of ``size`` (H, W) that contains it."""
        if self.area == 0:
            return CompactMask(size, (0, 0, 0, 0), self.bits, 0)
        x0, y0, x1, y1 = self.box
        if x0 + dx < 0 or y0 + dy < 0 or x1 + dx >= size[1] or y1 + dy >= size[0]:
            raise ValueError(f"box {self.box} moved by ({dx}, {dy}) leaves a frame of size {size}")
        return CompactMask(size, (x0 + dx, y0 + dy, x1 + dx, y1 + dy), self.bits, self.area)

    def rle_counts(self) -> np.ndarray:
        """Uncompressed COCO RLE counts of the whole frame (int64), from the box window alone."""
        if self.area == 0:
            return np.array([self.size[0] * self.size[1]], dtype=np.int64)
        return _box_counts(self.window, self.box[:2], self.size)
