from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO

from grounded_sam.export.coco import coco_dataset, result_to_coco_annotations
from grounded_sam.ops.rle import mask_to_rle, masks_to_rles, rle_to_mask
from grounded_sam.result import Result

H, W = 40, 56


def shapes() -> Result:
    yy, xx = np.mgrid[:H, :W]
    circle = (yy - 20) ** 2 + (xx - 16) ** 2 < 12**2
    ring = ((yy - 20) ** 2 + (xx - 40) ** 2 < 13**2) & ((yy - 20) ** 2 + (xx - 40) ** 2 >= 6**2)
    return Result(
        masks=np.stack([circle, ring]),
        boxes=np.array([[4, 8, 28, 32], [27.5, 7, 53, 33.25]]),
        labels=["disk", "ring"],
        scores=[0.75, 0.5],
        mask_scores=[0.9, 0.8],
        image_size=(H, W),
    )


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / (a | b).sum())


def test_rle_round_trip() -> None:
    rng = np.random.default_rng(0)
    masks = rng.random((3, 13, 29)) > 0.6  # non-square, to catch a transposition
    for mask in masks:
        rle = mask_to_rle(mask)
        assert rle["size"] == [13, 29]
        assert isinstance(rle["counts"], str)
        json.dumps(rle)
        np.testing.assert_array_equal(rle_to_mask(rle), mask)
        np.testing.assert_array_equal(rle_to_mask({**rle, "counts": rle["counts"].encode()}), mask)
    assert [r["counts"] for r in masks_to_rles(masks)] == [mask_to_rle(m)["counts"] for m in masks]
    assert masks_to_rles(np.zeros((0, 5, 5), bool)) == []


def test_uncompressed_rle_is_decoded() -> None:
    # column-major runs: 2 zeros, 3 ones, 1 zero on a 2x3 mask
    mask = rle_to_mask({"size": [2, 3], "counts": [2, 3, 1]})
    np.testing.assert_array_equal(mask, [[False, True, True], [False, True, False]])


def test_bad_rle_and_mask_shapes() -> None:
    with pytest.raises(ValueError, match="'size'"):
        rle_to_mask({"counts": "abc"})
    with pytest.raises(ValueError, match=r"\(H, W\)"):
        mask_to_rle(np.zeros((1, 4, 4), bool))


def test_annotations() -> None:
    result = shapes()
    anns = result_to_coco_annotations(result, image_id=5, category_ids={"disk": 3, "ring": 9}, start_id=11)
    assert [a["id"] for a in anns] == [11, 12]
    assert [a["category_id"] for a in anns] == [3, 9]
    assert all(a["image_id"] == 5 and a["iscrowd"] == 0 for a in anns)
    assert anns[1]["bbox"] == [28.0, 8.0, 25.0, 25.0]  # XYWH box of the ring mask (columns 28..52)
    assert anns[1]["detector_bbox"] == pytest.approx([27.5, 7, 25.5, 26.25])  # the detector's box
    assert [a["area"] for a in anns] == result.areas.tolist()
    assert anns[0]["score"] == pytest.approx(0.75) and anns[1]["mask_score"] == pytest.approx(0.8)
    np.testing.assert_array_equal(rle_to_mask(anns[1]["segmentation"]), result.masks[1])
    default_ids = result_to_coco_annotations(result)
    assert [a["category_id"] for a in default_ids] == [1, 2]
    with pytest.raises(ValueError, match=r"\['ring'\] have no class id"):
        result_to_coco_annotations(result, category_ids={"disk": 1})
    with pytest.raises(ValueError, match="'rle' or 'polygon'"):
        result_to_coco_annotations(result, segmentation="mesh")  # type: ignore[arg-type]
    assert result_to_coco_annotations(Result.empty((H, W))) == []


def test_pycocotools_loads_the_dataset(tmp_path: Path) -> None:
    result = shapes()
    other = result[[1]]
    data = coco_dataset([("a.jpg", result), ("b.jpg", Result.empty((H, W))), ("c.jpg", other)])
    path = tmp_path / "instances.json"
    path.write_text(json.dumps(data))
    coco = COCO(str(path))
    assert sorted(coco.getImgIds()) == [1, 2, 3]
    assert [c["name"] for c in coco.loadCats(coco.getCatIds())] == ["disk", "ring"]
    assert sorted(coco.getAnnIds()) == [1, 2, 3]  # ids run on across images
    assert coco.getAnnIds(imgIds=[2]) == []
    for ann in coco.loadAnns(coco.getAnnIds(imgIds=[1])):
        np.testing.assert_array_equal(coco.annToMask(ann).astype(bool), result.masks[ann["id"] - 1])
    (ann,) = coco.loadAnns(coco.getAnnIds(imgIds=[3]))
    assert ann["category_id"] == 2
    assert coco.imgs[3] == {"id": 3, "file_name": "c.jpg", "height": H, "width": W}


def test_dataset_categories_argument() -> None:
    result = shapes()
    by_name = coco_dataset([("a.jpg", result)], ["ring", "disk", "unused"])
    assert by_name["categories"] == [
        {"id": 1, "name": "ring"},
        {"id": 2, "name": "disk"},
        {"id": 3, "name": "unused"},
    ]
    assert [a["category_id"] for a in by_name["annotations"]] == [2, 1]
    by_id = coco_dataset([("a.jpg", result)], {"disk": 7, "ring": 4})
    assert [c["id"] for c in by_id["categories"]] == [4, 7]
    empty = coco_dataset([])
    assert empty["images"] == [] and empty["annotations"] == [] and empty["categories"] == []


def test_polygon_segmentation_through_pycocotools(tmp_path: Path) -> None:
    result = shapes()
    data = coco_dataset([("a.jpg", result)], segmentation="polygon")
    path = tmp_path / "poly.json"
    path.write_text(json.dumps(data))
    coco = COCO(str(path))
    for ann, mask in zip(coco.loadAnns(coco.getAnnIds()), result.masks, strict=True):
        assert isinstance(ann["segmentation"], list)
        assert all(len(poly) >= 6 and len(poly) % 2 == 0 for poly in ann["segmentation"])
        assert iou(coco.annToMask(ann).astype(bool), mask) >= 0.9


def test_polygon_mode_keeps_empty_masks_as_rle() -> None:
    result = shapes()
    result.masks[0] = False
    seg_empty, seg_ring = (
        a["segmentation"] for a in result_to_coco_annotations(result, segmentation="polygon")
    )
    assert isinstance(seg_empty, dict) and not rle_to_mask(seg_empty).any()
    assert isinstance(seg_ring, list) and len(seg_ring) == 1  # one component, hole stitched in


def overflowing() -> Result:
    """Detector boxes that the masks overflow (up to 9 px), as SAM's masks often do."""
    result = shapes()
    boxes = result.boxes.copy()
    boxes[0] = [9, 11, 20, 26]
    return Result(result.masks, boxes, result.labels, result.scores, result.mask_scores, (H, W))


@pytest.mark.parametrize("segmentation", ["rle", "polygon"])
def test_every_bbox_encloses_its_segmentation_and_is_its_box(tmp_path: Path, segmentation: str) -> None:
    result = overflowing()
    path = tmp_path / "instances.json"
    path.write_text(json.dumps(coco_dataset([("a.jpg", result)], segmentation=segmentation)))
    coco = COCO(str(path))
    for ann in coco.loadAnns(coco.getAnnIds()):
        rle = coco.annToRLE(ann)
        decoded = mask_utils.decode(rle).astype(bool)
        assert ann["bbox"] == mask_utils.toBbox(rle).tolist()
        x, y, w, h = (int(v) for v in ann["bbox"])
        inside = np.zeros_like(decoded)
        inside[y : y + h, x : x + w] = True
        assert decoded.any() and not (decoded & ~inside).any()  # every pixel inside the box
        assert ann["area"] == int(mask_utils.area(rle)) == decoded.sum()
    detector = [a["detector_bbox"] for a in coco.loadAnns(coco.getAnnIds())]
    assert detector[0] == [9.0, 11.0, 11.0, 15.0]  # kept, but not the bbox


def test_polygon_area_is_the_polygons_area_not_the_masks() -> None:
    result = shapes()
    rle_anns = result_to_coco_annotations(result)
    poly_anns = result_to_coco_annotations(result, segmentation="polygon", tolerance=2.0)
    for rle_ann, poly_ann in zip(rle_anns, poly_anns, strict=True):
        assert rle_ann["area"] == int(result.areas[rle_ann["id"] - 1])
        polygons = mask_utils.frPyObjects(poly_ann["segmentation"], H, W)
        assert poly_ann["area"] == int(mask_utils.area(mask_utils.merge(polygons)))
        assert poly_ann["area"] != rle_ann["area"]  # simplified outlines cover other pixels
        # the shoelace area of the outline agrees with the rasterised polygon to within its perimeter
        xy = np.asarray(poly_ann["segmentation"][0]).reshape(-1, 2)
        shoelace = 0.5 * abs(np.dot(xy[:, 0], np.roll(xy[:, 1], 1)) - np.dot(xy[:, 1], np.roll(xy[:, 0], 1)))
        assert abs(shoelace - poly_ann["area"]) < 0.1 * poly_ann["area"]
