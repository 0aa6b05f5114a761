"""YOLO labels (Ultralytics text format).

Segmentation lines are ``cls x1 y1 x2 y2 ...`` and detection lines ``cls cx cy w h``, with coordinates
normalised by the image width / height. Polygon vertices lie on pixel centres (integer indices before
normalisation; see :func:`grounded_sam.ops.mask_to_polygons`), the convention of `cv2.findContours` and
of rasterisers such as `cv2.fillPoly` or `PIL.ImageDraw.polygon`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING

import numpy as np

from grounded_sam.export.class_ids import resolve_class_ids
from grounded_sam.ops.polygons import mask_to_polygons, stitch_polygons

if TYPE_CHECKING:
    from grounded_sam.result import Result

logger = logging.getLogger(__name__)


def result_to_yolo_lines(
    result: Result,
    class_ids: Mapping[str, int] | None = None,
    *,
    tolerance: float = 1.0,
    precision: int = 6,
) -> list[str]:
    """YOLO segmentation lines ``cls x1 y1 x2 y2 ...`` (normalised), one per instance with a non-empty mask.

    All components and holes of a mask are stitched into one polygon. `class_ids` maps label -> class id;
    by default the labels of this result are numbered from 0 in sorted order (pass a fixed mapping when
    writing a dataset). Instances with empty masks are skipped (logged).
    """
    ids = resolve_class_ids(result, class_ids, start=0)
    lines = []
    for i, inst in enumerate(result):
        polygons = mask_to_polygons(inst.mask, normalize=True, tolerance=tolerance)
        if not polygons:
            logger.warning("instance %d (%s) has an empty mask; it has no YOLO polygon", i, inst.label)
            continue
        coords = np.clip(stitch_polygons(polygons), 0.0, 1.0).ravel()
        lines.append(" ".join([str(ids[inst.label]), *(f"{v:.{precision}f}" for v in coords)]))
    return lines


def result_to_yolo_box_lines(
    result: Result, class_ids: Mapping[str, int] | None = None, *, precision: int = 6
) -> list[str]:
    """YOLO detection lines ``cls cx cy w h`` from the masks' boxes (`Result.mask_boxes`; the detector's
    box for an empty mask), clipped to the image and normalised by its size."""
    ids = resolve_class_ids(result, class_ids, start=0)
    h, w = result.image_size
    boxes = np.clip(result.mask_boxes(), 0, [w, h, w, h]).astype(np.float64)
    cx, cy = (boxes[:, 0] + boxes[:, 2]) / (2 * w), (boxes[:, 1] + boxes[:, 3]) / (2 * h)
    bw, bh = (boxes[:, 2] - boxes[:, 0]) / w, (boxes[:, 3] - boxes[:, 1]) / h
    return [
        " ".join([str(ids[label]), *(f"{v:.{precision}f}" for v in row)])
        for label, row in zip(result.labels, np.stack([cx, cy, bw, bh], axis=1), strict=True)
    ]
