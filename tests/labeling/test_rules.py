"""Quality rules on synthetic scenes whose truth is known: candidates are built from the true masks."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest
from pycocotools.coco import COCO

from grounded_sam.data import SceneConfig, make_scene
from grounded_sam.labeling import Ontology, label_dataset
from grounded_sam.labeling.candidates import MANIFEST_FILE, append_line, iter_lines, read_manifest
from grounded_sam.labeling.rules import QualityRules, apply_rules, detector_threshold, dropped_counts
from grounded_sam.pipeline import GroundedSAM
from grounded_sam.result import Result
from grounded_sam.text.base import Detections
from tests.labeling.helpers import TruthPredictor, pixel_key, scene_table

CONFIG = SceneConfig(size=(64, 96), min_objects=3, max_objects=3, shapes=("circle", "square"))


@pytest.fixture(scope="module")
def scene():
    found = next(s for s in (make_scene(seed, CONFIG) for seed in range(50)) if len(s.labels) == 3)
    return found


def candidates(scene, rows: list[tuple[int, str, float]]) -> Result:
    """A Result with one candidate per (object index, phrase, score), masks = the object's true mask."""
    idx = [i for i, _, _ in rows]
    return Result(
        masks=scene.masks[idx],
        boxes=scene.boxes[idx],
        labels=[phrase for _, phrase, _ in rows],
        scores=[score for _, _, score in rows],
        mask_scores=[0.9] * len(rows),
        image_size=scene.masks.shape[1:],
    )


def rules_of(found) -> list[str | None]:
    return [c.rule for c in found]


def test_two_prompts_for_one_class_give_no_duplicate_labels(scene) -> None:
    onto = Ontology.from_mapping({"car": {"prompts": ["car", "sedan"]}, "person": "person"})
    result = candidates(scene, [(0, "car", 0.6), (0, "sedan", 0.8), (1, "car", 0.7), (2, "person", 0.5)])
    kept, found = apply_rules(result, onto, QualityRules())
    assert kept.labels == ["sedan", "car", "person"]  # object 0 once, by its better prompt
    assert rules_of(found) == ["duplicate", None, None, None]
    assert found[0].against == 1 and found[0].iou == pytest.approx(1.0)
    assert found[0].class_name == "car" and not found[0].kept
    # one prompt's own repeated boxes are the detector's business, not a duplicate of another prompt
    same = candidates(scene, [(0, "car", 0.6), (0, "car", 0.8)])
    assert rules_of(apply_rules(same, onto, QualityRules())[1]) == [None, None]


def test_agnostic_nms_keeps_the_more_confident_class(scene) -> None:
    onto = Ontology.from_classes("circle, square")
    result = candidates(scene, [(0, "circle", 0.7), (0, "square", 0.9), (1, "circle", 0.4)])
    kept, found = apply_rules(result, onto, QualityRules())
    assert len(kept) == 3  # off by default: classes do not compete
    kept, found = apply_rules(result, onto, QualityRules(agnostic_nms=0.5))
    assert kept.labels == ["square", "circle"] and kept.scores.tolist() == pytest.approx([0.9, 0.4])
    assert rules_of(found) == ["agnostic_nms", None, None] and found[0].against == 1


def test_negative_phrase_removes_its_look_alikes_only(scene) -> None:
    onto = Ontology.from_classes("bottle")
    rules = QualityRules(negatives=("thermos",))
    rows = [
        (0, "bottle", 0.4),
        (0, "thermos", 0.6),
        (1, "bottle", 0.7),
        (2, "bottle", 0.8),
        (2, "thermos", 0.5),
    ]
    kept, found = apply_rules(candidates(scene, rows), onto, rules)
    # object 0: the thermos scores higher -> not a bottle; object 2: the bottle scores higher -> kept
    assert rules_of(found) == ["negative", "negative_phrase", None, None, "negative_phrase"]
    assert found[0].against == 1 and found[0].iou == pytest.approx(1.0)
    np.testing.assert_array_equal(kept.masks, scene.masks[[1, 2]])
    assert kept.labels == ["bottle", "bottle"]
    with pytest.raises(ValueError, match="both a prompt and a negative"):
        QualityRules(negatives=("bottle",)).check(onto)


def test_per_class_thresholds_and_the_runs_threshold(scene) -> None:
    onto = Ontology.from_mapping({"car": {"prompts": ["car"], "box_threshold": 0.6}, "person": "person"})
    result = candidates(scene, [(0, "car", 0.5), (1, "car", 0.65), (2, "person", 0.4), (2, "person", 0.2)])
    kept, found = apply_rules(result, onto, QualityRules(), box_threshold=0.3)
    assert rules_of(found) == ["box_threshold", None, None, "box_threshold"] and len(kept) == 2
    assert detector_threshold(onto, 0.3) == 0.3 and detector_threshold(onto, 0.7) == 0.6
    assert detector_threshold(Ontology.from_classes("a"), None) is None


def test_area_bounds_and_max_per_image(scene) -> None:
    onto = Ontology.from_classes("circle, square")
    labels = ["circle" if shape == "circle" else "square" for shape in scene.shapes]
    rows = [(i, labels[i], 0.9 - 0.1 * i) for i in range(3)]
    fractions = scene.masks.sum(axis=(1, 2)) / scene.masks[0].size
    low, high = sorted(fractions)[0], sorted(fractions)[-1]
    _, found = apply_rules(candidates(scene, rows), onto, QualityRules(min_area=(low + 1e-6)))
    assert [c.rule for c in found] == ["min_area" if f == low else None for f in fractions]
    _, found = apply_rules(candidates(scene, rows), onto, QualityRules(max_area=(high - 1e-6)))
    assert [c.rule for c in found] == ["max_area" if f == high else None for f in fractions]
    kept, found = apply_rules(candidates(scene, rows), onto, QualityRules(max_per_image=2))
    assert rules_of(found) == [None, None, "max_per_image"] and len(kept) == 2
    assert dropped_counts(found) == {"max_per_image": 1}


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"agnostic_nms": 1.5}, "agnostic_nms"),
        ({"min_area": 0.5, "max_area": 0.1}, "must not exceed"),
        ({"max_per_image": 0}, "at least 1"),
    ],
)
def test_bad_rules(options, match) -> None:
    with pytest.raises(ValueError, match=match):
        QualityRules(**options)


def test_ontology_file_forms(tmp_path) -> None:
    path = tmp_path / "onto.yaml"
    path.write_text(
        "car: {prompts: [car, sedan, pickup truck], box_threshold: 0.4}\nbike: [bicycle]\ncab: car\n"
    )
    onto = Ontology.load(path)
    assert onto.prompts == ("car", "sedan", "pickup truck", "bicycle", "cab")
    assert onto.classes == ("car", "car", "car", "bike", "car") and onto.class_names == ("car", "bike")
    assert onto.box_threshold_of("car") == 0.4 and onto.box_threshold_of("bike") is None
    assert Ontology.from_dict(onto.to_dict()) == onto
    plain = Ontology.from_mapping({"yellow taxi": "car"})
    assert plain.to_dict() == {"prompts": ["yellow taxi"], "classes": ["car"]}  # plain forms unchanged
    for bad, match in [
        ("car: {prompts: [car], box_threshold: 2}", r"\[0, 1\]"),
        ("car: {colour: red}", "unknown"),
    ]:
        path.write_text(bad)
        with pytest.raises(ValueError, match=match):
            Ontology.load(path)


class LookAlikeDetector:
    """'bottle' finds every object of a scene; 'thermos' finds its circles, with a higher score."""

    def __init__(self, table) -> None:
        self.table = table

    def detect(self, image, phrases, *, box_threshold=None, text_threshold=None) -> Detections:
        truth = self.table[pixel_key(image)]
        rows = [(i, "bottle", 0.5) for i in range(len(truth.labels))]
        rows += [(i, "thermos", 0.8) for i, label in enumerate(truth.labels) if label.endswith("circle")]
        rows = [row for row in rows if row[1] in phrases]
        ids = [list(phrases).index(phrase) for _, phrase, _ in rows]
        scores = [score for _, _, score in rows]
        return Detections(truth.boxes[[i for i, _, _ in rows]], scores, ids, tuple(phrases))


def test_manifest_explains_every_dropped_candidate(scenes, tmp_path) -> None:
    folder, truth = scenes
    table = scene_table(folder)
    pipeline = GroundedSAM(LookAlikeDetector(table), TruthPredictor(table))
    rules = QualityRules(negatives=("thermos",))
    summary = label_dataset(folder, "bottle", tmp_path / "ds", pipeline=pipeline, rules=rules)
    lines = read_manifest(tmp_path / "ds" / MANIFEST_FILE)
    assert sorted(lines) == sorted(truth) and len(list(iter_lines(tmp_path / "ds" / MANIFEST_FILE))) == 8
    coco = COCO(str(tmp_path / "ds" / "annotations" / "instances_train.json"))
    expected = Counter()
    for image in coco.loadImgs(coco.getImgIds()):
        labels = truth[image["file_name"]].labels
        found = lines[image["file_name"]]["candidates"]
        circles = sum(label.endswith("circle") for label in labels)
        assert len(found) == len(labels) + circles
        for c in found:
            assert c["kept"] == (c["rule"] is None)
            if c["phrase"] == "thermos":
                assert c["rule"] == "negative_phrase" and c["class"] is None
            elif c["rule"] is not None:
                assert c["rule"] == "negative" and found[c["against"]]["phrase"] == "thermos"
                assert c["iou"] == pytest.approx(1.0)
        assert len(coco.getAnnIds(imgIds=image["id"])) == len(labels) - circles  # squares only
        expected.update({"negative_phrase": circles, "negative": circles})
    assert summary.dropped_per_rule == dict(expected) and sum(expected.values()) > 0
    saved = json.loads((tmp_path / "ds" / "summary.json").read_text())
    assert saved["dropped_per_rule"] == dict(expected)


def test_manifest_lines_survive_a_torn_write(tmp_path) -> None:
    path = tmp_path / "m.jsonl"
    append_line(path, {"rel": "a.png", "n": 1})
    with open(path, "ab") as f:
        f.write(b'{"rel": "b.png", "n"')  # a writer killed mid-line
    append_line(path, {"rel": "a.png", "n": 2})
    assert read_manifest(path) == {"a.png": {"rel": "a.png", "n": 2}}
    assert path.read_text().count("\n") == 3
