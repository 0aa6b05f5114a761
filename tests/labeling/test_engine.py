"""label_dataset end to end: each format loaded back and compared with the ground truth / pipeline."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml
from PIL import Image
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO

from grounded_sam.labeling import Ontology, label_dataset, split_of
from grounded_sam.labeling.manifest import parse_splits
from grounded_sam.labeling.rules import QualityRules
from tests.labeling.helpers import CORRUPT, NOTE, ONTOLOGY, factory, scripted_pipeline_for

SPLIT = "0.5,0.5"
CLASS_ID = {"disc": 0, "box": 1}  # first appearance in ONTOLOGY


def run(scenes, out, fmt, masks="sam", **options):
    folder, _ = scenes
    return label_dataset(
        folder,
        ONTOLOGY,
        out,
        format=fmt,
        pipeline_factory=factory(folder, masks=masks),
        split=SPLIT,
        **options,
    )


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max((a | b).sum(), 1))


def test_coco_matches_truth_boxes_and_pipeline_masks(scenes, tmp_path) -> None:
    folder, truth = scenes
    # the random SAM's masks of distinct objects overlap: keep what two prompts of one class find
    summary = run(scenes, tmp_path / "ds", "coco", rules=QualityRules(duplicate_iou=1.0))
    assert (summary.images, summary.labelled) == (9, 8)
    assert summary.failed[0][0] == CORRUPT and "cannot read" in summary.failed[0][1]
    notes = {s.path: s.note for s in summary.skipped}
    assert "not an image" in notes[NOTE] and len(notes) == 9  # 8 ground-truth json files + the note
    pipeline = scripted_pipeline_for(str(folder))
    sorted_images = sorted([*truth, CORRUPT])
    seen = 0
    for split in ("train", "val"):
        coco = COCO(str(tmp_path / "ds" / "annotations" / f"instances_{split}.json"))
        assert {c["id"]: c["name"] for c in coco.loadCats(coco.getCatIds())} == {1: "disc", 2: "box"}
        for image in coco.loadImgs(coco.getImgIds()):
            rel = image["file_name"]
            assert split_of(rel, parse_splits(SPLIT)) == split
            assert image["id"] == sorted_images.index(rel) + 1  # ids from the sorted image list
            assert (tmp_path / "ds" / "images" / split / rel).read_bytes() == (folder / rel).read_bytes()
            anns = coco.loadAnns(coco.getAnnIds(imgIds=image["id"]))
            gt = truth[rel]
            x1, y1, x2, y2 = gt.boxes.T
            np.testing.assert_allclose(
                [a["detector_bbox"] for a in anns], np.stack([x1, y1, x2 - x1, y2 - y1], 1), atol=1e-3
            )
            for ann in anns:  # the box of an instance is its mask's box, which encloses every pixel
                assert ann["bbox"] == mask_utils.toBbox(coco.annToRLE(ann)).tolist()
            assert [coco.cats[a["category_id"]]["name"] for a in anns] == [
                ONTOLOGY[label] for label in gt.labels
            ]
            expected = pipeline.predict(folder / rel, list(ONTOLOGY)).masks
            for ann, mask in zip(anns, expected, strict=True):
                np.testing.assert_array_equal(coco.annToMask(ann).astype(bool), mask)
            seen += 1
    assert seen == 8
    all_ids = [
        a["id"]
        for split in ("train", "val")
        for a in json.loads((tmp_path / "ds" / "annotations" / f"instances_{split}.json").read_text())[
            "annotations"
        ]
    ]
    assert sorted(all_ids) == list(range(1, sum(len(t.labels) for t in truth.values()) + 1))
    assert summary.instances_per_class == {
        name: sum(ONTOLOGY[label] == name for t in truth.values() for label in t.labels) for name in CLASS_ID
    }


def test_coco_polygons_rasterise_to_the_masks(scenes, tmp_path) -> None:
    _, truth = scenes
    run(scenes, tmp_path / "ds", "coco", masks="truth", segmentation="polygon")
    for split in ("train", "val"):
        coco = COCO(str(tmp_path / "ds" / "annotations" / f"instances_{split}.json"))
        for image in coco.loadImgs(coco.getImgIds()):
            anns = coco.loadAnns(coco.getAnnIds(imgIds=image["id"]))
            for ann, mask in zip(anns, truth[image["file_name"]].masks, strict=True):
                assert isinstance(ann["segmentation"], list)
                assert iou(coco.annToMask(ann).astype(bool), mask) > 0.85


def test_yolo_layout_and_polygons(scenes, tmp_path) -> None:
    folder, truth = scenes
    out = tmp_path / "ds"
    run(scenes, out, "yolo", masks="truth")
    data = yaml.safe_load((out / "data.yaml").read_text())
    assert data["names"] == {0: "disc", 1: "box"} and data["nc"] == 2
    assert (data["train"], data["val"]) == ("images/train", "images/val") and "path" not in data
    for rel, gt in truth.items():
        split = split_of(rel, parse_splits(SPLIT))
        image = out / "images" / split / rel
        assert image.read_bytes() == (folder / rel).read_bytes()
        label_file = out / "labels" / split / rel.replace(".png", ".txt")
        lines = label_file.read_text().splitlines()
        assert [int(line.split()[0]) for line in lines] == [CLASS_ID[ONTOLOGY[label]] for label in gt.labels]
        h, w = gt.masks.shape[1:]
        for line, mask in zip(lines, gt.masks, strict=True):
            xy = np.array(line.split()[1:], dtype=np.float64).reshape(-1, 2) * [w, h]
            drawn = cv2.fillPoly(np.zeros((h, w), np.uint8), [np.round(xy).astype(np.int32)], 1).astype(bool)
            assert iou(drawn, mask) > 0.85
    assert not (out / "labels" / "train" / "sub").exists()  # the corrupt image has no label file


def test_masks_pngs_and_json(scenes, tmp_path) -> None:
    folder, truth = scenes
    out = tmp_path / "ds"
    run(scenes, out, "masks", masks="truth")
    classes = json.loads((out / "classes.json").read_text())
    assert [(c["id"], c["name"], c["mask_value"]) for c in classes["classes"]] == [
        (0, "disc", 1),
        (1, "box", 2),
    ]
    for rel, gt in truth.items():
        stem = out / "masks" / split_of(rel, parse_splits(SPLIT)) / rel.removesuffix(".png")
        class_map = np.asarray(Image.open(f"{stem}.png"))
        instance_map = np.asarray(Image.open(f"{stem}.instances.png"))
        expected_class = np.zeros(gt.masks.shape[1:], np.uint8)
        expected_instance = np.zeros(gt.masks.shape[1:], np.uint8)
        for i, (label, mask) in enumerate(zip(gt.labels, gt.masks, strict=True)):
            expected_class[mask] = CLASS_ID[ONTOLOGY[label]] + 1  # scene masks are disjoint
            expected_instance[mask] = i + 1
        np.testing.assert_array_equal(class_map, expected_class)
        np.testing.assert_array_equal(instance_map, expected_instance)
        meta = json.loads(Path(f"{stem}.json").read_text())
        assert [(inst["id"], inst["class"], inst["prompt"]) for inst in meta["instances"]] == [
            (i + 1, ONTOLOGY[label], label) for i, label in enumerate(gt.labels)
        ]
        np.testing.assert_allclose([inst["box"] for inst in meta["instances"]], gt.boxes)
        assert (out / meta["image"]).read_bytes() == (folder / rel).read_bytes()


def test_classes_string_keeps_only_named_phrases_and_summary_file(scenes, tmp_path) -> None:
    _, truth = scenes
    summary = label_dataset(
        scenes[0],
        "Red Circle, blue square",
        tmp_path / "ds",
        format="coco",
        pipeline_factory=factory(scenes[0]),
    )
    assert list(summary.instances_per_class) == ["red circle", "blue square"]
    expected = {
        n: sum(label == n for t in truth.values() for label in t.labels) for n in summary.instances_per_class
    }
    assert summary.instances_per_class == expected
    assert summary.images_per_split == {"train": 8}
    on_disk = json.loads((tmp_path / "ds" / "summary.json").read_text())
    assert on_disk == summary.to_dict() and on_disk["failed"][0]["path"] == CORRUPT


def test_contact_sheet_and_progress(scenes, tmp_path) -> None:
    updates = []
    summary = run(scenes, tmp_path / "ds", "yolo", contact_sheet=True, progress=updates.append, batch_size=3)
    assert summary.contact_sheet == tmp_path / "ds" / "contact_sheet.png"
    sheet = np.asarray(Image.open(summary.contact_sheet))
    assert sheet.shape[1] == 3 * 192 and sheet.shape[0] > 3 * 192  # 8 thumbnails: 3 x 3 cells + captions
    assert sheet[:192, :192].std() > 10 and sheet[-192:, -192:].std() == 0  # first cell drawn, last empty
    assert updates[0].outcome is None and updates[0].total == 9
    assert [u.completed for u in updates[1:]] == list(range(1, 10))
    assert sorted(u.outcome.status for u in updates[1:]) == ["done"] * 8 + ["failed"]


def test_bad_arguments(scenes, tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        label_dataset(tmp_path / "missing", "car", tmp_path / "ds")
    with pytest.raises(ValueError, match="format"):
        run(scenes, tmp_path / "ds", "voc")
    with pytest.raises(ValueError, match="sum to 1"):
        label_dataset(scenes[0], "car", tmp_path / "ds", split="0.5,0.2", pipeline_factory=factory(scenes[0]))
    with pytest.raises(ValueError, match="empty"):
        label_dataset(scenes[0], Ontology.from_classes("., ;"), tmp_path / "ds")
