"""CVAT for images 1.1 export: parsed here per the format, and imported by datumaro's ``cvat`` format (in
its own venv: datumaro pins pillow and opencv)."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import numpy as np
import pytest

from grounded_sam.export.cvat import cvat_xml, mask_to_cvat_rle, result_to_cvat_shapes
from grounded_sam.result import Result

H, W = 30, 41


def decode(runs: list[int], left: int, top: int, width: int, height: int) -> np.ndarray:
    flat = np.repeat(np.arange(len(runs)) % 2 == 1, runs)
    canvas = np.zeros((H, W), bool)
    canvas[top : top + height, left : left + width] = flat.reshape(height, width)
    return canvas


def sample() -> Result:
    yy, xx = np.mgrid[:H, :W]
    ring = ((yy - 14) ** 2 + (xx - 20) ** 2 < 10**2) & ((yy - 14) ** 2 + (xx - 20) ** 2 >= 4**2)
    corner = np.zeros((H, W), bool)
    corner[:5, :3] = True  # starts with a mask pixel: the runs start with an empty background run
    boxes = np.array([[12, 6, 28, 22], [0, 0, 2, 4]], np.float32)  # detector boxes, tighter than masks
    return Result(np.stack([ring, corner]), boxes, ["ring", 'odd "name" <&>'], [0.7, 0.6], [0.9, 0.8], (H, W))


def test_mask_rle_within_its_box() -> None:
    for mask in sample().masks:
        runs, (left, top, width, height) = mask_to_cvat_rle(mask)
        assert sum(runs) == width * height
        np.testing.assert_array_equal(decode(runs, left, top, width, height), mask)
    assert mask_to_cvat_rle(sample().masks[1])[0][0] == 0
    assert mask_to_cvat_rle(np.zeros((H, W), bool)) == ([], (0, 0, 0, 0))


def test_xml_holds_a_box_and_a_mask_per_instance() -> None:
    result = sample()
    text = cvat_xml([("train/a.png", (H, W), result_to_cvat_shapes(result))], ["ring", 'odd "name" <&>'])
    root = ET.fromstring(text)
    assert root.findtext("version") == "1.1"
    assert [e.findtext("name") for e in root.iter("label")] == ["ring", 'odd "name" <&>']
    (image,) = root.iter("image")
    assert (image.get("name"), image.get("width"), image.get("height")) == ("train/a.png", str(W), str(H))
    boxes, masks = image.findall("box"), image.findall("mask")
    assert [b.get("label") for b in boxes] == [m.get("label") for m in masks] == result.labels
    for box, mask_el, mask, mask_box in zip(boxes, masks, result.masks, result.mask_boxes(), strict=True):
        geometry = [int(mask_el.get(k)) for k in ("left", "top", "width", "height")]
        runs = [int(v) for v in mask_el.get("rle").split(",")]
        np.testing.assert_array_equal(decode(runs, *geometry), mask)
        assert [float(box.get(k)) for k in ("xtl", "ytl", "xbr", "ybr")] == mask_box.tolist()


DATUMARO_IMPORT = """
import json, sys
import numpy as np
from datumaro.components.annotation import AnnotationType
from datumaro.components.dataset import Dataset
dataset = Dataset.import_from(sys.argv[1], "cvat")
names = [c.name for c in dataset.categories()[AnnotationType.label]]
out = []
for item in dataset:
    for ann in item.annotations:
        entry = {"item": item.id, "type": ann.type.name, "label": names[ann.label]}
        if ann.type == AnnotationType.mask:
            entry["pixels"] = np.flatnonzero(ann.image.ravel()).tolist()
        else:
            entry["bbox"] = [float(v) for v in ann.get_bbox()]
        out.append(entry)
print(json.dumps(out))
"""


@pytest.mark.slow
def test_datumaro_imports_the_same_counts_and_masks(tmp_path) -> None:
    from PIL import Image

    from tests.tool_venvs import run_tool, tool_python

    python = tool_python("datumaro", ["datumaro==1.13.12"])
    result = sample()
    (tmp_path / "images" / "train").mkdir(parents=True)
    Image.new("RGB", (W, H)).save(tmp_path / "images" / "train" / "a.png")
    names = ["ring", 'odd "name" <&>']
    (tmp_path / "annotations.xml").write_text(
        cvat_xml([("train/a.png", (H, W), result_to_cvat_shapes(result))], names)
    )
    found = run_tool(python, DATUMARO_IMPORT, str(tmp_path))
    masks = [f for f in found if f["type"] == "mask"]
    boxes = [f for f in found if f["type"] == "bbox"]
    assert len(masks) == len(boxes) == len(result) and {f["item"] for f in found} == {"train/a"}
    for item, mask in zip(masks, result.masks, strict=True):
        assert item["pixels"] == np.flatnonzero(mask.ravel()).tolist()
    for item, (x0, y0, x1, y1) in zip(boxes, result.mask_boxes(), strict=True):
        assert item["bbox"] == [x0, y0, x1 - x0, y1 - y0]
    assert [f["label"] for f in masks] == result.labels
