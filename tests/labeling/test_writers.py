from __future__ import annotations

from pathlib import Path

import numpy as np
import yaml

from grounded_sam.labeling import LabelingSettings, Ontology
from grounded_sam.labeling.writers import DatasetLayout, class_result, yolo_data_yaml
from grounded_sam.result import Result


def test_data_yaml_splits_and_awkward_names() -> None:
    names = ["car", 'say "hi": yes', "#hash", "üñí"]
    data = yaml.safe_load(yolo_data_yaml(("train", "val", "test"), names))
    assert data == {
        "train": "images/train",
        "val": "images/val",
        "test": "images/test",
        "nc": 4,
        "names": dict(enumerate(names)),
    }
    single = yaml.safe_load(yolo_data_yaml(("train",), ["car"]))
    assert (single["train"], single["val"]) == ("images/train", "images/train") and "test" not in single
    custom = yaml.safe_load(yolo_data_yaml(("a", "b"), ["car"]))
    assert (custom["train"], custom["val"]) == ("images/a", "images/b")


def test_class_result_maps_prompts_and_drops_unknown_phrases() -> None:
    settings = LabelingSettings(
        Ontology.from_mapping({"yellow taxi": "car", "cab": "car", "pedestrian": "person"})
    )
    masks = np.zeros((3, 4, 5), bool)
    masks[:, 1, 1] = True
    result = Result(
        masks, np.ones((3, 4)), ["cab", "no label", "pedestrian"], [0.9, 0.8, 0.7], [1, 1, 1], (4, 5)
    )
    classed, prompts = class_result(result, settings)
    assert classed.labels == ["car", "person"] and prompts == ["cab", "pedestrian"]
    np.testing.assert_allclose(classed.scores, [0.9, 0.7])


def test_layout_outputs_per_format() -> None:
    onto = Ontology.from_classes("car")
    layouts = {
        f: DatasetLayout(Path("/out"), LabelingSettings(onto, format=f)) for f in ("coco", "yolo", "masks")
    }
    assert layouts["coco"].outputs("a/b.c.jpg", "val") == ["images/val/a/b.c.jpg"]
    assert layouts["yolo"].outputs("a/b.c.jpg", "val") == ["images/val/a/b.c.jpg", "labels/val/a/b.c.txt"]
    assert layouts["masks"].outputs("x.png", "train")[1:] == [
        "masks/train/x.png",
        "masks/train/x.instances.png",
        "masks/train/x.json",
    ]
    assert "annotations/instances_train.json" in layouts["coco"].dataset_files()
