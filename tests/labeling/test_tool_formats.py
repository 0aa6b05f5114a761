"""label_dataset to Label Studio tasks and CVAT XML: read back per the formats, and by datumaro (slow)."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import numpy as np
import pytest

from grounded_sam.labeling import label_dataset, split_of
from grounded_sam.labeling.manifest import parse_splits
from tests.export.test_label_studio import decode_rle_pack
from tests.labeling.helpers import ONTOLOGY, factory

SPLIT = "0.5,0.5"


def run(scenes, out, fmt, **options):
    folder, _ = scenes
    factory_ = factory(folder, masks="truth")
    return label_dataset(folder, ONTOLOGY, out, format=fmt, pipeline_factory=factory_, split=SPLIT, **options)


def test_label_studio_tasks_hold_every_mask_with_its_class(scenes, tmp_path) -> None:
    _, truth = scenes
    out = tmp_path / "ds"
    summary = run(scenes, out, "label-studio")
    tasks = json.loads((out / "tasks.json").read_text())
    assert len(tasks) == summary.labelled == len(truth)
    config = ET.fromstring((out / "label_config.xml").read_text())
    assert [e.get("value") for e in config.iter("Label")] == ["disc", "box"]
    for task in tasks:
        rel = task["data"]["image"].split("?d=images/", 1)[1].split("/", 1)[1]
        split = split_of(rel, parse_splits(SPLIT))
        assert task["data"]["image"] == f"/data/local-files/?d=images/{split}/{rel}"
        assert (out / "images" / split / rel).is_file()
        regions = task["predictions"][0]["result"]
        gt = truth[rel]
        assert [r["value"]["brushlabels"] for r in regions] == [[ONTOLOGY[label]] for label in gt.labels]
        for region, mask in zip(regions, gt.masks, strict=True):
            h, w = mask.shape
            rgba = decode_rle_pack(region["value"]["rle"]).reshape(h, w, 4)
            np.testing.assert_array_equal(rgba[..., 3] > 0, mask)


def test_label_studio_polygons(scenes, tmp_path) -> None:
    run(scenes, tmp_path / "ds", "label-studio", segmentation="polygon")
    tasks = json.loads((tmp_path / "ds" / "tasks.json").read_text())
    regions = [r for t in tasks for r in t["predictions"][0]["result"]]
    assert regions and all(r["type"] == "polygonlabels" and len(r["value"]["points"]) >= 3 for r in regions)
    assert ET.fromstring((tmp_path / "ds" / "label_config.xml").read_text()).find("PolygonLabels") is not None


def test_cvat_xml_holds_every_mask_and_box(scenes, tmp_path) -> None:
    _, truth = scenes
    out = tmp_path / "ds"
    run(scenes, out, "cvat")
    root = ET.parse(out / "annotations.xml").getroot()
    images = root.findall("image")
    assert len(images) == len(truth)
    for image in images:
        split, rel = image.get("name").split("/", 1)
        assert (out / "images" / split / rel).is_file()
        gt = truth[rel]
        masks = image.findall("mask")
        assert [m.get("label") for m in masks] == [ONTOLOGY[label] for label in gt.labels]
        for element, mask in zip(masks, gt.masks, strict=True):
            left, top, width, height = (int(element.get(k)) for k in ("left", "top", "width", "height"))
            runs = [int(v) for v in element.get("rle").split(",")]
            decoded = np.zeros_like(mask)
            decoded[top : top + height, left : left + width] = np.repeat(
                np.arange(len(runs)) % 2 == 1, runs
            ).reshape(height, width)
            np.testing.assert_array_equal(decoded, mask)
        boxes = [[float(b.get(k)) for k in ("xtl", "ytl", "xbr", "ybr")] for b in image.findall("box")]
        np.testing.assert_allclose(boxes, gt.boxes)


DATUMARO_COUNT = """
import json, sys
import numpy as np
from datumaro.components.annotation import AnnotationType
from datumaro.components.dataset import Dataset
dataset = Dataset.import_from(sys.argv[1], "cvat")
out = {}
for item in dataset:
    masks = [a for a in item.annotations if a.type == AnnotationType.mask]
    boxes = [a for a in item.annotations if a.type == AnnotationType.bbox]
    out[item.id] = {"boxes": len(boxes), "masks": [np.flatnonzero(m.image.ravel()).tolist() for m in masks]}
print(json.dumps(out))
"""


@pytest.mark.slow
def test_datumaro_imports_the_labelled_dataset(scenes, tmp_path) -> None:
    from tests.tool_venvs import run_tool, tool_python

    python = tool_python("datumaro", ["datumaro==1.13.12"])
    _, truth = scenes
    out = tmp_path / "ds"
    run(scenes, out, "cvat")
    found = run_tool(python, DATUMARO_COUNT, str(out))
    assert len(found) == len(truth)
    for rel, gt in truth.items():
        item = found[f"{split_of(rel, parse_splits(SPLIT))}/{rel.rsplit('.', 1)[0]}"]
        assert item["boxes"] == len(gt.labels)
        assert item["masks"] == [np.flatnonzero(m.ravel()).tolist() for m in gt.masks]
