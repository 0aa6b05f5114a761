"""COCO run-length encoding of masks through pycocotools: compressed RLE dicts, both ways.

A compressed RLE is ``{"size": [H, W], "counts": str}`` (JSON-ready); uncompressed counts are column-major
(Fortran) run lengths starting with a run of zeros (which may be empty).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from pycocotools import mask as mask_utils


def mask_to_rle(mask: np.ndarray) -> dict[str, Any]:
    """(H, W) bool mask -> COCO compressed RLE ``{"size": [H, W], "counts": str}`` (JSON-ready)."""
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"mask must have shape (H, W); got {mask.shape}")
    return masks_to_rles(mask[None])[0]


def masks_to_rles(masks: np.ndarray) -> list[dict[str, Any]]:
    """(N, H, W) bool masks -> N compressed RLE dicts, encoded in one pycocotools call."""
    masks = np.asarray(masks)
    if masks.ndim != 3:
        raise ValueError(f"masks must have shape (N, H, W); got {masks.shape}")
    if masks.shape[0] == 0:
        return []
    # pycocotools wants (H, W, N) uint8 in Fortran (column-major) order.
    encoded = mask_utils.encode(np.asfortranarray(masks.transpose(1, 2, 0).astype(np.uint8)))
    return [_json_ready(rle) for rle in encoded]


def counts_to_rle(counts: Sequence[int] | np.ndarray, size: tuple[int, int]) -> dict[str, Any]:
    """Uncompressed counts of an (H, W) mask -> its compressed RLE dict (no mask is materialised)."""
    height, width = size
    coded = mask_utils.frPyObjects({"size": [height, width], "counts": list(counts)}, height, width)
    return _json_ready(coded)


def rle_to_mask(rle: Mapping[str, Any]) -> np.ndarray:
    """COCO RLE (compressed with str/bytes counts, or uncompressed with a list) -> (H, W) bool mask."""
    return mask_utils.decode(rle_for_pycocotools(rle)).astype(bool)


def rles_to_masks(rles: Sequence[Mapping[str, Any]], height: int, width: int) -> np.ndarray:
    """N COCO RLE dicts of (height, width) masks -> (N, H, W) bool; no RLE gives (0, H, W)."""
    if not rles:
        return np.zeros((0, height, width), dtype=bool)
    return mask_utils.decode([rle_for_pycocotools(rle) for rle in rles]).transpose(2, 0, 1).astype(bool)


def rle_for_pycocotools(rle: Mapping[str, Any]) -> dict[str, Any]:
    """An RLE dict (compressed with str or bytes counts, or uncompressed) as pycocotools' C code takes it
    (``decode``, ``area``, ``toBbox``, ``merge``: compressed, bytes counts)."""
    try:
        h, w = (int(v) for v in rle["size"])
        counts = rle["counts"]
    except (KeyError, TypeError, ValueError) as e:
        raise ValueError(f"an RLE needs 'size': [H, W] and 'counts'; got {dict(rle)!r:.200}") from e
    if isinstance(counts, list):
        return mask_utils.frPyObjects({"size": [h, w], "counts": counts}, h, w)
    return {"size": [h, w], "counts": counts.encode("ascii") if isinstance(counts, str) else counts}


def _json_ready(rle: Mapping[str, Any]) -> dict[str, Any]:
    return {"size": [int(v) for v in rle["size"]], "counts": rle["counts"].decode("ascii")}
