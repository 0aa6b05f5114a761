"""COCO export: compressed RLE masks, annotation dicts and whole datasets that pycocotools loads.

Every annotation's ``bbox`` ([x, y, width, height] in pixels) is the box of its own segmentation, as
pycocotools computes it (``toBbox``), and ``area`` is the segmentation's area (the mask's pixel count, or
the rasterised polygons' area in polygon mode), so a box always encloses its mask. The detector's box,
which SAM's mask can overflow, is kept in ``detector_bbox``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from pycocotools import mask as mask_utils

from grounded_sam.export.class_ids import class_id_map, resolve_class_ids
from grounded_sam.ops.boxes import xyxy_to_xywh
from grounded_sam.ops.polygons import mask_to_polygons
from grounded_sam.ops.rle import rle_for_pycocotools

if TYPE_CHECKING:
    from grounded_sam.result import Result


def result_to_coco_annotations(
    result: Result,
    image_id: int = 1,
    category_ids: Mapping[str, int] | None = None,
    start_id: int = 1,
    *,
    segmentation: Literal["rle", "polygon"] = "rle",
    tolerance: float = 1.0,
) -> list[dict[str, Any]]:
    """One COCO annotation dict per instance, with ids `start_id`, `start_id + 1`, ...

    Keys: id, image_id, category_id, segmentation, area, bbox (XYWH pixels, the segmentation's box),
    iscrowd 0, score, mask_score and detector_bbox (XYWH, the detector's box). The segmentation is a
    compressed RLE dict, or with ``"polygon"`` a list of flat ``[x1, y1, ...]`` polygons on the pixel
    edges (one per component, holes stitched in, simplified at `tolerance` pixels; see
    `ops.mask_to_polygons`; empty masks stay RLE). `area` and `bbox` are those of the segmentation as
    written: in polygon mode, of the polygons as pycocotools rasterises them. `category_ids` maps
    label -> id; by default the labels of this result are numbered from 1 in sorted order.
    """
    if segmentation not in ("rle", "polygon"):
        raise ValueError(f"segmentation must be 'rle' or 'polygon'; got {segmentation!r}")
    ids = resolve_class_ids(result, category_ids, start=1)
    h, w = result.image_size
    rles = result.rles()
    detector_xywh = xyxy_to_xywh(result.boxes.astype(np.float64))
    annotations = []
    for i, inst in enumerate(result):
        seg: Any = rles[i]
        coded = rle_for_pycocotools(rles[i])
        if segmentation == "polygon" and mask_utils.area(coded) > 0:
            polygons = mask_to_polygons(inst.mask, normalize=False, tolerance=tolerance, pixel_edges=True)
            seg = [[round(float(v), 2) for v in poly.ravel()] for poly in polygons]
            coded = mask_utils.merge(mask_utils.frPyObjects(seg, h, w))
        annotations.append(
            {
                "id": start_id + i,
                "image_id": int(image_id),
                "category_id": ids[inst.label],
                "segmentation": seg,
                "area": int(mask_utils.area(coded)),
                "bbox": [float(v) for v in mask_utils.toBbox(coded)],
                "iscrowd": 0,
                "score": inst.score,
                "mask_score": inst.mask_score,
                "detector_bbox": [round(float(v), 3) for v in detector_xywh[i]],
            }
        )
    return annotations


def coco_dataset(
    images: Sequence[tuple[str, Result]],
    categories: Sequence[str] | Mapping[str, int] | None = None,
    *,
    segmentation: Literal["rle", "polygon"] = "rle",
) -> dict[str, Any]:
    """A COCO instances dict (images, annotations, categories) that `pycocotools.coco.COCO` loads.

    `images` is a list of (file_name, Result); image ids are 1, 2, ... in that order and annotation ids
    run on across images. `categories` is a list of names (ids from 1 in the given order) or a
    name -> id mapping; by default every label seen is numbered from 1 in sorted order.

    Example::

        json.dump(coco_dataset([("a.jpg", result_a), ("b.jpg", result_b)]), open("instances.json", "w"))
    """
    if categories is None:
        category_ids = class_id_map((label for _, r in images for label in r.labels), start=1)
    elif isinstance(categories, Mapping):
        category_ids = dict(categories)
    else:
        category_ids = {name: i for i, name in enumerate(categories, start=1)}
    image_entries: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    for image_id, (file_name, result) in enumerate(images, start=1):
        h, w = result.image_size
        image_entries.append({"id": image_id, "file_name": str(file_name), "height": h, "width": w})
        annotations += result_to_coco_annotations(
            result, image_id, category_ids, start_id=len(annotations) + 1, segmentation=segmentation
        )
    by_id = sorted(category_ids.items(), key=lambda item: item[1])
    return {
        "info": {"description": "exported by grounded_sam"},
        "images": image_entries,
        "annotations": annotations,
        "categories": [{"id": cid, "name": name} for name, cid in by_id],
    }
