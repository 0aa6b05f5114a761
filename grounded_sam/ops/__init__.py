"""Pure helpers on boxes, masks, RLE and polygons: one home, one convention each.

Conventions (every caller in the package uses these):

* masks are (H, W) or (N, H, W) bool arrays;
* boxes are (N, 4) XYXY in pixels with the far edge *exclusive*: a box is the region
  ``x0 <= x < x1, y0 <= y < y1`` in continuous coordinates where pixel (x, y) spans [x, x + 1) ×
  [y, y + 1), so a mask's tight box is ``(first column, first row, last column + 1, last row + 1)`` and
  its width is its number of columns. An empty mask's box is (0, 0, 0, 0). (Segment everything's records
  keep segment-anything's inclusive far edge for drop-in compatibility; see
  :mod:`grounded_sam.sam.everything.mask_ops`.)
* RLE is COCO's: compressed ``{"size": [H, W], "counts": str}`` (JSON-ready) written by pycocotools;
  uncompressed counts are column-major (Fortran) run lengths starting with a run of zeros.
* polygons are (K, 2) float32 XY vertices (see :func:`mask_to_polygons` for where they lie).
"""

from grounded_sam.ops.boxes import box_ious, masks_to_boxes, nms, xyxy_to_xywh
from grounded_sam.ops.masks import drop_parts, inside_larger, mask_ious
from grounded_sam.ops.polygons import mask_to_polygons, stitch_polygons
from grounded_sam.ops.rle import (
    counts_to_rle,
    mask_to_rle,
    masks_to_rles,
    rle_for_pycocotools,
    rle_to_mask,
    rles_to_masks,
)

__all__ = [
    "box_ious",
    "counts_to_rle",
    "drop_parts",
    "inside_larger",
    "mask_ious",
    "mask_to_polygons",
    "mask_to_rle",
    "masks_to_boxes",
    "masks_to_rles",
    "nms",
    "rle_for_pycocotools",
    "rle_to_mask",
    "rles_to_masks",
    "stitch_polygons",
    "xyxy_to_xywh",
]
