"""Downloads: the PNG zip, the COCO json (read back with pycocotools) and the overlay PNG."""

from __future__ import annotations

import io
import json
import zipfile

import numpy as np
from PIL import Image
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO

from grounded_sam.result import Result
from grounded_sam.ui.downloads import coco_json_bytes, download_stem, masks_zip_bytes, overlay_png_bytes
from tests.pipelines import SCENE
from tests.ui.results import scene_result


def test_coco_json_loads_in_pycocotools_with_the_same_masks(tmp_path) -> None:
    result = scene_result()
    path = tmp_path / "a.json"
    path.write_bytes(coco_json_bytes(result, "scene.png"))
    coco = COCO(str(path))
    assert coco.imgs[1]["file_name"] == "scene.png" and (coco.imgs[1]["height"], coco.imgs[1]["width"]) == (
        120,
        160,
    )
    anns = coco.loadAnns(coco.getAnnIds())
    assert len(anns) == len(result)
    for ann, mask, label in zip(anns, result.masks, result.labels, strict=True):
        np.testing.assert_array_equal(coco.annToMask(ann).astype(bool), mask)
        assert coco.cats[ann["category_id"]]["name"] == label
        assert ann["area"] == int(mask_utils.area(ann["segmentation"]))


def test_zip_holds_a_label_map_a_legend_and_one_png_per_instance() -> None:
    result = scene_result()
    with zipfile.ZipFile(io.BytesIO(masks_zip_bytes(result, "scene"))) as archive:
        names = archive.namelist()
        legend = archive.read("scene_labels.txt").decode().splitlines()
        label_map = np.asarray(Image.open(io.BytesIO(archive.read("scene_labels.png"))))
        first = np.asarray(Image.open(io.BytesIO(archive.read(names[2]))))
    assert names[:2] == ["scene_labels.png", "scene_labels.txt"] and len(names) == 2 + len(result)
    assert names[2] == f"scene_000_{SCENE.labels[0].replace(' ', '_')}.png"
    ids = {line.split(" ", 1)[1]: int(line.split(" ", 1)[0]) for line in legend}
    assert ids["background"] == 0
    for mask, label in zip(result.masks, result.labels, strict=True):
        assert (label_map[mask] == ids[label]).all()
    assert (label_map[~result.masks.any(0)] == 0).all()
    np.testing.assert_array_equal(first == 255, result.masks[0])


def test_overlay_png_differs_from_the_image_only_near_instances() -> None:
    result = scene_result()
    drawn = np.asarray(Image.open(io.BytesIO(overlay_png_bytes(SCENE.image, result))).convert("RGB"))
    assert drawn.shape == SCENE.image.shape
    changed = (drawn != SCENE.image).any(axis=2)
    assert changed[result.masks.any(0)].mean() > 0.9


def test_empty_result_downloads_are_valid() -> None:
    empty = Result.empty((120, 160))
    assert json.loads(coco_json_bytes(empty, "x.png"))["annotations"] == []
    with zipfile.ZipFile(io.BytesIO(masks_zip_bytes(empty))) as archive:
        assert archive.namelist() == ["masks_labels.png", "masks_labels.txt"]


def test_download_stem() -> None:
    assert download_stem("my photo.JPG") == "my_photo"
    assert download_stem("Shapes on a gradient.png") == "Shapes_on_a_gradient"
    assert download_stem(".png") == "image"
