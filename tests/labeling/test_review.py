"""Review sessions on a labelled dataset: doubt order, decisions saved as made, reopening, export."""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml
from pycocotools.coco import COCO

from grounded_sam.labeling import label_dataset
from grounded_sam.labeling.review import REVIEW_FILE, ReviewSession, image_doubt
from grounded_sam.result import Result
from tests.labeling.helpers import ONTOLOGY, factory


@pytest.fixture
def dataset(scenes, tmp_path):
    folder, truth = scenes
    out = tmp_path / "ds"
    label_dataset(folder, ONTOLOGY, out, pipeline_factory=factory(folder, masks="truth"), split="0.5,0.5")
    return out, truth


def test_images_are_ordered_by_doubt_and_decisions_survive_reopening(dataset) -> None:
    out, truth = dataset
    session = ReviewSession(out)
    assert sorted(session.images) == sorted(truth)
    doubts = [session.doubt[rel] for rel in session.images]
    assert doubts == sorted(doubts)
    for rel in session.images:  # the scripted detector scores 0.95, 0.85, ...: doubt = the lowest
        assert session.doubt[rel] == pytest.approx(0.95 - 0.1 * (len(truth[rel].labels) - 1))
    assert session.first_open() == 0
    first = next(rel for rel in session.images if len(truth[rel].labels) >= 2)
    session.decide(first, 0, "approve")
    session.decide(first, 1, "reject")
    session.decide(first, 0, "relabel", "box")  # the last decision on an instance wins
    lines = [json.loads(line) for line in (out / REVIEW_FILE).read_text().splitlines()]
    assert lines[1] == {
        "rel": first,
        "index": 1,
        "action": "reject",
        "class": ONTOLOGY[truth[first].labels[1]],
    }
    reopened = ReviewSession(out)
    assert [i.status for i in reopened.instances(first)][:2] == ["approved", "rejected"]
    assert reopened.instances(first)[0].class_name == "box"
    assert reopened.progress() == session.progress() == (2, sum(len(t.labels) for t in truth.values()))
    with pytest.raises(ValueError, match="not a class"):
        session.decide(first, 0, "relabel", "giraffe")
    with pytest.raises(IndexError):
        session.decide(first, 99, "approve")


def test_export_writes_approved_edited_and_added_labels_only(dataset, tmp_path) -> None:
    out, truth = dataset
    session = ReviewSession(out)
    a, b = session.images[:2]
    session.decide(a, 0, "approve")
    session.decide(b, 0, "relabel", "box")
    for index in range(1, len(session.instances(b))):
        session.decide(b, index, "reject")
    added = Result(truth[a].masks[:1], truth[a].boxes[:1], ["phrase"], [0.5], [0.7], truth[a].masks.shape[1:])
    (new,) = session.add(a, added, "disc", via="phrase: a red thing")
    assert session.instances(a)[new].status == "approved"
    session = ReviewSession(out)  # the added instance is replayed too
    assert session.instances(a)[new].origin == "phrase: a red thing"
    session.export(tmp_path / "coco", "coco")
    anns = {}
    for split in ("train", "val"):
        coco = COCO(str(tmp_path / "coco" / "annotations" / f"instances_{split}.json"))
        names = {c["id"]: c["name"] for c in coco.loadCats(coco.getCatIds())}
        for image in coco.loadImgs(coco.getImgIds()):
            anns[image["file_name"]] = [
                (names[x["category_id"]], coco.annToMask(x).astype(bool))
                for x in coco.loadAnns(coco.getAnnIds(imgIds=image["id"]))
            ]
    assert [name for name, _ in anns[a]] == [ONTOLOGY[truth[a].labels[0]], "disc"]
    np.testing.assert_array_equal(anns[a][0][1], truth[a].masks[0])
    assert [name for name, _ in anns[b]] == ["box"]
    assert all(anns[rel] == [] for rel in truth if rel not in (a, b))  # unreviewed: left out by default
    session.export(tmp_path / "all", "yolo", include_unreviewed=True)
    label_files = sorted((tmp_path / "all" / "labels").rglob("*.txt"))
    lines = sum(len(p.read_text().splitlines()) for p in label_files)
    assert lines == sum(len(t.labels) for t in truth.values()) + 1 - (len(truth[b].labels) - 1)
    assert yaml.safe_load((tmp_path / "all" / "data.yaml").read_text())["names"] == {0: "disc", 1: "box"}
    with pytest.raises(ValueError, match="not empty"):
        session.export(tmp_path / "all", "yolo")


def test_a_refined_instance_gets_its_new_mask_and_box_and_is_replayed_and_exported(dataset, tmp_path) -> None:
    out, truth = dataset
    session = ReviewSession(out)
    rel = session.images[0]
    h, w = truth[rel].masks.shape[1:]
    mask = np.zeros((h, w), dtype=bool)
    mask[5:9, 10:20] = True
    session.refine(rel, 0, mask, 0.61, [(12.0, 6.0, 1), (30.5, 7.0, 0)])
    line = json.loads((out / REVIEW_FILE).read_text().splitlines()[-1])
    assert (line["index"], line["action"], line["points"]) == (0, "refine", [[12.0, 6.0, 1], [30.5, 7.0, 0]])
    for state in (session, ReviewSession(out)):  # in memory and replayed from the file
        inst = state.instances(rel)[0]
        assert inst.status == "approved" and inst.mask_score == pytest.approx(0.61)
        assert inst.box == (10.0, 5.0, 20.0, 9.0) and inst.points[-1] == (30.5, 7.0, 0)
        np.testing.assert_array_equal(state.result(rel).masks[0], mask)
    session.export(tmp_path / "coco", "coco")
    exported = [
        ann
        for name in ("train", "val")
        for ann in COCO(str(tmp_path / "coco" / "annotations" / f"instances_{name}.json")).dataset[
            "annotations"
        ]
    ]
    assert len(exported) == 1 and exported[0]["bbox"] == [10.0, 5.0, 10.0, 4.0] and exported[0]["area"] == 40
    with pytest.raises(IndexError):
        session.refine(rel, 99, mask, 0.5, [(1.0, 1.0, 1)])


def test_close_calls_count_as_doubt() -> None:
    line = {
        "candidates": [
            {"kept": False, "rule": "duplicate", "score": 0.9},
            {"kept": False, "rule": "negative_phrase", "score": 0.99},
        ]
    }
    assert image_doubt([], line) == pytest.approx(0.1)
    assert image_doubt([], None) == 1.0
