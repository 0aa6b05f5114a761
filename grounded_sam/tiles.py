"""Tiled prediction for large images: small objects that vanish when the whole image is shrunk to the
models' input size are found in overlapping tiles, at full resolution.

The detector runs on the whole image and on every tile of a grid (`tile_windows`). Boxes are moved into
image coordinates and merged per phrase (`merge_tile_boxes`): boxes of one object seen by several tiles
(IoU above 0.5), and pieces of an object cut by a tile border (a box touching a border between tiles)
overlapping another box of its phrase, become one box — the best whole (uncut) box of the group, or the
union of the pieces when every view was cut. SAM then draws each box's mask inside the most central tile
that contains the box (one embedding per tile, at tile resolution), or on the whole image for boxes larger
than a tile. Detector and SAM inputs are bounded by the tile size, and each mask is kept cut to its own
box (`MaskCrops`): the `Result` holds no (N, H, W) stack unless someone asks for ``result.masks``. Memory
is the image itself, one tile's model inputs and outputs, and the masks' boxes; boxes larger than a tile
are decoded on the whole image a few at a time (`DECODE_PIXELS`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torchvision.ops import box_iou

from grounded_sam.ops.mask_crops import MaskCrops
from grounded_sam.text.base import Detections

DUPLICATE_IOU = 0.5  # two views of one object
DECODE_PIXELS = 2**26  # mask pixels decoded per SAM call: 64 boxes of a 1024 tile, 2 of a 24 MP image
PIECE_OVERLAP = 0.15  # intersection / smaller box above which a cut piece joins a box of its phrase


@dataclass(frozen=True)
class Tiling:
    """Tile grid settings: square tiles of `size` pixels overlapping by `overlap` (a fraction of the
    size, in [0, 0.9]); `full_pass` also runs the detector on the whole image (for large objects)."""

    size: int = 1024
    overlap: float = 0.2
    full_pass: bool = True

    def __post_init__(self) -> None:
        if int(self.size) < 64:
            raise ValueError(f"tile size must be at least 64 pixels; got {self.size}")
        if not 0.0 <= self.overlap <= 0.9:
            raise ValueError(f"tile overlap must lie in [0, 0.9]; got {self.overlap}")

    @property
    def margin(self) -> float:
        """Distance (pixels) from a tile border within which a box counts as cut by it."""
        return 2.0 + 0.01 * self.size


def as_tiling(tiles: Tiling | int | tuple[int, float]) -> Tiling:
    """`Tiling` from a Tiling, a tile size, or (size, overlap)."""
    if isinstance(tiles, Tiling):
        return tiles
    if isinstance(tiles, tuple):
        return Tiling(int(tiles[0]), float(tiles[1]))
    return Tiling(int(tiles))


def tile_windows(height: int, width: int, size: int, overlap: float) -> list[tuple[int, int, int, int]]:
    """XYXY windows of a grid of `size`-pixel tiles with `overlap` covering the image, row by row; the
    last row / column is shifted to end at the image border. An image within one tile gives no tiles."""
    if height <= size and width <= size:
        return []
    stride = max(1, round(size * (1.0 - overlap)))

    def starts(length: int) -> list[int]:
        if length <= size:
            return [0]
        values = list(range(0, length - size, stride))
        return [*values, length - size]

    return [
        (x, y, min(x + size, width), min(y + size, height)) for y in starts(height) for x in starts(width)
    ]


def detect_tiled(
    detector: Any, pixels: np.ndarray, phrases: list[str], tiling: Tiling, **thresholds: Any
) -> Detections:
    """Detections of the whole image and of every tile, merged (see the module docstring)."""
    h, w = pixels.shape[:2]
    boxes, scores, ids, cut = [], [], [], []
    windows = tile_windows(h, w, tiling.size, tiling.overlap)
    passes = ([(0, 0, w, h)] if tiling.full_pass or not windows else []) + windows
    for x0, y0, x1, y1 in passes:
        found = detector.detect(np.ascontiguousarray(pixels[y0:y1, x0:x1]), phrases, **thresholds)
        if len(found) == 0:
            continue
        shifted = found.boxes + np.array([x0, y0, x0, y0], dtype=np.float32)
        boxes.append(shifted)
        scores.append(found.scores)
        ids.append(found.phrase_ids)
        cut.append(_touches_inner_border(shifted, (x0, y0, x1, y1), (w, h), tiling.margin))
    if not boxes:
        return Detections.empty(phrases)
    return merge_tile_boxes(
        np.concatenate(boxes), np.concatenate(scores), np.concatenate(ids), np.concatenate(cut), phrases
    )


def merge_tile_boxes(
    boxes: np.ndarray, scores: np.ndarray, phrase_ids: np.ndarray, cut: np.ndarray, phrases: list[str]
) -> Detections:
    """Merge (K, 4) XYXY image-coordinate boxes per phrase into one box per object; `cut` (K,) marks
    boxes touching a border between tiles. Returns the merged detections, best score first."""
    order = np.argsort(-scores, kind="stable")
    boxes, scores, phrase_ids, cut = boxes[order], scores[order], phrase_ids[order], cut[order]
    parent = list(range(len(boxes)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    t = torch.from_numpy(np.asarray(boxes, dtype=np.float32))
    iou = box_iou(t, t).numpy()
    inter = _intersections(boxes)
    areas = np.maximum((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]), 1e-6)
    smaller = np.minimum(areas[:, None], areas[None, :])
    same = phrase_ids[:, None] == phrase_ids[None, :]
    piece = (cut[:, None] | cut[None, :]) & (inter / smaller > PIECE_OVERLAP)
    linked = same & ((iou > DUPLICATE_IOU) | piece)
    for i, j in zip(*np.nonzero(np.triu(linked, 1)), strict=True):
        parent[root(int(j))] = root(int(i))
    groups: dict[int, list[int]] = {}
    for i in range(len(boxes)):
        groups.setdefault(root(i), []).append(i)
    merged = []
    for members in groups.values():  # members are in score order, best first
        whole = [i for i in members if not cut[i]]
        if whole:
            box = boxes[whole[0]]
        else:
            box = np.concatenate([boxes[members, :2].min(axis=0), boxes[members, 2:].max(axis=0)])
        merged.append((box, scores[members[0]], phrase_ids[members[0]]))
    merged.sort(key=lambda item: -float(item[1]))
    return Detections(
        np.stack([m[0] for m in merged]), [m[1] for m in merged], [m[2] for m in merged], tuple(phrases)
    )


def masks_in_tiles(
    predictor: Any, pixels: np.ndarray, boxes: np.ndarray, tiling: Tiling
) -> tuple[MaskCrops, np.ndarray]:
    """N masks (as `MaskCrops`) and (N,) scores for image-coordinate boxes, each decoded in the most
    central tile that contains it (one embedding per tile), or in the whole image when no tile does."""
    h, w = pixels.shape[:2]
    crops = [np.zeros((0, 0), dtype=bool)] * len(boxes)  # every box gets a window below
    offsets = np.zeros((len(boxes), 2), dtype=np.int64)
    mask_scores = np.zeros(len(boxes), dtype=np.float32)
    windows = tile_windows(h, w, tiling.size, tiling.overlap)
    home: dict[tuple[int, int, int, int], list[int]] = {}
    for i, box in enumerate(boxes):
        home.setdefault(_best_window(box, windows, (w, h)), []).append(i)
    for (x0, y0, x1, y1), rows in home.items():
        predictor.set_image(np.ascontiguousarray(pixels[y0:y1, x0:x1]))
        per_call = max(1, DECODE_PIXELS // ((x1 - x0) * (y1 - y0)))
        for start in range(0, len(rows), per_call):
            part = rows[start : start + per_call]
            local = boxes[part] - np.array([x0, y0, x0, y0], dtype=np.float32)
            found, found_scores, _ = predictor.predict_boxes(local, multimask_output=False)
            cut = MaskCrops.from_windows(found[:, 0], (x0, y0, x1, y1), (h, w))
            for k, row in enumerate(part):
                crops[row], offsets[row] = cut.crops[k], cut.offsets[k]
            mask_scores[part] = found_scores[:, 0]
    return MaskCrops(tuple(crops), offsets, (h, w)), mask_scores


def _best_window(
    box: np.ndarray, windows: list[tuple[int, int, int, int]], size: tuple[int, int]
) -> tuple[int, int, int, int]:
    """The window containing `box` with the largest distance from the box to its borders; else the image."""
    best, best_room = (0, 0, size[0], size[1]), -1.0
    for window in windows:
        room = min(box[0] - window[0], box[1] - window[1], window[2] - box[2], window[3] - box[3])
        if room >= 0 and room > best_room:
            best, best_room = window, float(room)
    return best


def _touches_inner_border(
    boxes: np.ndarray, window: tuple[int, int, int, int], image: tuple[int, int], margin: float
) -> np.ndarray:
    """(K,) bool: the box lies within `margin` of a window border that is not an image border."""
    x0, y0, x1, y1 = window
    w, h = image
    near = np.stack(
        [
            (boxes[:, 0] - x0 <= margin) & (x0 > 0),
            (boxes[:, 1] - y0 <= margin) & (y0 > 0),
            (x1 - boxes[:, 2] <= margin) & (x1 < w),
            (y1 - boxes[:, 3] <= margin) & (y1 < h),
        ],
        axis=1,
    )
    return near.any(axis=1)


def _intersections(boxes: np.ndarray) -> np.ndarray:
    """(K, K) intersection areas of XYXY boxes."""
    lo = np.maximum(boxes[:, None, :2], boxes[None, :, :2])
    hi = np.minimum(boxes[:, None, 2:], boxes[None, :, 2:])
    return np.clip(hi - lo, 0, None).prod(axis=2)
