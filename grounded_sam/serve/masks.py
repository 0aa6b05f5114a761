"""Masks as data: COCO RLE (pycocotools' encoding), base64 PNG, or polygons in pixels."""

from __future__ import annotations

import base64
import io
from typing import Any, Literal

import numpy as np
from PIL import Image

from grounded_sam.ops.polygons import mask_to_polygons
from grounded_sam.ops.rle import masks_to_rles

MaskFormat = Literal["rle", "png", "polygon", "none"]
MASK_FORMATS: tuple[str, ...] = ("rle", "png", "polygon", "none")


def mask_to_png(mask: np.ndarray) -> str:
    """(H, W) bool -> base64 of a 1-bit PNG (nonzero = inside)."""
    buffer = io.BytesIO()
    Image.fromarray(np.asarray(mask, dtype=bool)).save(buffer, format="PNG", optimize=False)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def mask_to_pixel_polygons(mask: np.ndarray, tolerance: float = 1.0) -> list[list[float]]:
    """(H, W) bool -> flat ``[x, y, x, y, ...]`` polygons in pixels, one per component, holes stitched in.

    Vertices lie on pixel edges (pixel (x, y) spans [x, x + 1) x [y, y + 1)), as COCO polygons do, so
    ``pycocotools.mask.frPyObjects`` rasterises them back to the mask; they are clipped to the image.
    """
    height, width = mask.shape
    polygons = mask_to_polygons(mask, normalize=False, tolerance=tolerance, pixel_edges=True)
    limits = np.array([width, height], dtype=np.float32)
    return [np.clip(polygon, 0, limits).reshape(-1).round(2).tolist() for polygon in polygons]


def encode_masks(masks: np.ndarray, mask_format: MaskFormat) -> list[Any]:
    """(N, H, W) bool -> N encoded masks in ``mask_format`` (``None`` each for ``"none"``)."""
    if mask_format == "rle":
        return masks_to_rles(masks)
    if mask_format == "png":
        return [mask_to_png(mask) for mask in masks]
    if mask_format == "polygon":
        return [mask_to_pixel_polygons(mask) for mask in masks]
    if mask_format == "none":
        return [None] * len(masks)
    raise ValueError(f"mask_format must be one of {', '.join(MASK_FORMATS)}; got {mask_format!r}")
