"""COCO export: compressed RLE masks, annotation dicts and whole datasets that pycocotools loads.

Every annotation's ``bbox`` ([x, y, width, height] in pixels) is the box of its own segmentation, as
pycocotools computes it (``toBbox``), and ``area`` is the segmentation's area (the mask's pixel count, or
the rasterised polygons' area in polygon mode), so a box always encloses its mask. The detector's box,
which SAM's mask can overflow, is kept in ``detector_bbox``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np
from pycocotools import mask as mask_utils

from grounded_sam.export.yolo import class_id_map, mask_to_polygons, resolve_class_ids
from grounded_sam.result import Result
from grounded_sam.sam.everything.mask_ops import xyxy_to_xywh


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
    return [
        {"size": [int(v) for v in rle["size"]], "counts": rle["counts"].decode("ascii")} for rle in encoded
    ]


def rle_to_mask(rle: Mapping[str, Any]) -> np.ndarray:
    """COCO RLE (compressed with str/bytes counts, or uncompressed with a list) -> (H, W) bool mask."""
    try:
        h, w = (int(v) for v in rle["size"])
        counts = rle["counts"]
    except (KeyError, TypeError, ValueError) as e:
        raise ValueError(f"an RLE needs 'size': [H, W] and 'counts'; got {dict(rle)!r:.200}") from e
    if isinstance(counts, list):
        coded = mask_utils.frPyObjects({"size": [h, w], "counts": counts}, h, w)
    else:
        coded = {"size": [h, w], "counts": counts.encode("ascii") if isinstance(counts, str) else counts}
    return mask_utils.decode(coded).astype(bool)


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
    `mask_to_polygons`; empty masks stay RLE). `area` and `bbox` are those of the segmentation as
    written: in polygon mode, of the polygons as pycocotools rasterises them. `category_ids` maps
    label -> id; by default the labels of this result are numbered from 1 in sorted order.
    """
    if segmentation not in ("rle", "polygon"):
        raise ValueError(f"segmentation must be 'rle' or 'polygon'; got {segmentation!r}")
    ids = resolve_class_ids(result, category_ids, start=1)
    h, w = result.image_size
    rles = masks_to_rles(result.masks)
    detector_xywh = xyxy_to_xywh(result.boxes.astype(np.float64))
    annotations = []
    for i, inst in enumerate(result):
        seg: Any = rles[i]
        coded = _coded(rles[i])
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


def _coded(rle: Mapping[str, Any]) -> dict[str, Any]:
    """A JSON-ready RLE (str counts) as pycocotools' C functions want it (bytes counts)."""
    return {"size": rle["size"], "counts": rle["counts"].encode("ascii")}


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
