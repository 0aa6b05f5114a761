"""Splits, settings fingerprints, path safety and the image scan."""

from __future__ import annotations

import json
import os

import pytest

from grounded_sam.labeling import LabelingSettings, Ontology, SettingsMismatchError, parse_splits, split_of
from grounded_sam.labeling.manifest import Manifest, check_relative, inside
from grounded_sam.labeling.scan import scan_images
from grounded_sam.naming import short_hash


def test_parse_splits() -> None:
    assert parse_splits("0.8,0.2") == (("train", 0.8), ("val", 0.2))
    assert parse_splits("1") == (("train", 1.0),)
    assert parse_splits([0.7, 0.2, 0.1]) == (("train", 0.7), ("val", 0.2), ("test", 0.1))
    assert parse_splits("train=0.9, holdout=0.1") == (("train", 0.9), ("holdout", 0.1))
    for bad in ("0.5,0.2", "a,b", "0.25,0.25,0.25,0.25", "train=0.5,0.5", "x/y=1"):
        with pytest.raises(ValueError):
            parse_splits(bad)


def test_split_is_a_deterministic_function_of_the_path() -> None:
    splits = parse_splits("0.8,0.2")
    paths = [f"folder_{i % 7}/img_{i}.jpg" for i in range(2000)]
    first = [split_of(p, splits) for p in paths]
    assert first == [split_of(p, splits) for p in reversed(paths)][::-1]
    assert abs(first.count("train") / len(paths) - 0.8) < 0.04
    assert split_of("a.png", parse_splits("0,1")) == "val"
    assert {split_of(p, parse_splits("1,0")) for p in paths} == {"train"}


def test_fingerprint_covers_every_setting() -> None:
    base = LabelingSettings(Ontology.from_classes("car, person"))
    variants = [
        LabelingSettings(Ontology.from_classes("car, bus")),
        LabelingSettings(Ontology.from_mapping({"car": "vehicle", "person": "person"})),
        LabelingSettings(base.ontology, format="yolo"),
        LabelingSettings(base.ontology, splits="0.9,0.1"),
        LabelingSettings(base.ontology, box_threshold=0.3),
        LabelingSettings(base.ontology, text_threshold=0.3),
        LabelingSettings(base.ontology, model="sam_vit_h"),
        LabelingSettings(base.ontology, segmentation="polygon"),
    ]
    prints = {v.fingerprint for v in variants}
    assert len(prints) == len(variants) and base.fingerprint not in prints
    assert LabelingSettings.from_dict(base.to_dict()).fingerprint == base.fingerprint
    with pytest.raises(ValueError, match="box_threshold"):
        LabelingSettings(base.ontology, box_threshold=1.5)


def test_manifest_refuses_other_settings_and_names_the_change(tmp_path) -> None:
    manifest = Manifest(tmp_path)
    settings = LabelingSettings(Ontology.from_classes("car"), box_threshold=0.3)
    manifest.write_settings(settings)
    manifest.check_settings(settings)
    with pytest.raises(SettingsMismatchError, match=r"box_threshold: 0.3 -> 0.4.*--overwrite"):
        manifest.check_settings(LabelingSettings(settings.ontology, box_threshold=0.4))


@pytest.mark.parametrize("rel", ["../x.png", "/etc/passwd", "a/../../b.png", "a\\..\\b.png", "", "a/./b"])
def test_unsafe_relative_paths_are_refused(rel) -> None:
    with pytest.raises(ValueError, match="refusing"):
        check_relative(rel)


def test_inside_refuses_symlinked_folders_leading_out(tmp_path) -> None:
    root, outside = tmp_path / "out", tmp_path / "elsewhere"
    root.mkdir()
    outside.mkdir()
    assert inside(root, "images/train/a.png") == root / "images/train/a.png"
    (root / "images").symlink_to(outside)
    with pytest.raises(ValueError, match="outside the output folder"):
        inside(root, "images/train/a.png")


def test_scan_sorts_nested_images_and_reports_what_it_skips(tmp_path) -> None:
    images, outside = tmp_path / "in", tmp_path / "outside"
    (images / "b" / "c").mkdir(parents=True)
    outside.mkdir()
    for rel in ("z.png", "b/c/a.jpg", "b/a.JPG", "b/a.png", ".hidden.png", "readme.md"):
        (images / rel).write_bytes(b"x")
    (outside / "secret.png").write_bytes(b"x")
    os.symlink(outside / "secret.png", images / "leak.png")
    os.symlink(images / "z.png", images / "b" / "alias.png")
    os.symlink(outside, images / "linked_dir")
    (images / "dataset").mkdir()
    (images / "dataset" / "copy.png").write_bytes(b"x")
    scan = scan_images(images, parse_splits("1"), exclude=images / "dataset")
    assert [(t.rel, t.image_id, t.stem) for t in scan.tasks] == [
        ("b/a.JPG", 1, "b/a"),
        ("b/a.png", 2, f"b/a~{short_hash('b/a.png')}"),  # same stem as b/a.JPG: both kept, distinct
        ("b/alias.png", 3, "b/alias"),
        ("b/c/a.jpg", 4, "b/c/a"),
        ("z.png", 5, "z"),
    ]
    assert all(t.source == str(images.resolve() / t.rel) and t.split == "train" for t in scan.tasks)
    notes = {s.path: s.note for s in scan.skipped}
    assert set(notes) == {"leak.png", "linked_dir", "readme.md"}
    assert "outside" in notes["leak.png"]
    assert "folder" in notes["linked_dir"] and "not an image" in notes["readme.md"]


def test_plans_and_records_of_older_versions_read_as_their_paths_own_stems(tmp_path) -> None:
    manifest = Manifest(tmp_path)
    (tmp_path / ".labeling").mkdir()
    (tmp_path / ".labeling" / "plan.json").write_text(json.dumps(["a/x.png", "y.jpg"]))  # a plain list
    assert manifest.planned() == {"a/x.png": "a/x", "y.jpg": "y"}
    stems = manifest.known_stems({"z.png": {"rel": "z.png", "status": "done"}, "y.jpg": {"stem": "y~1"}})
    assert stems == {"a/x.png": "a/x", "y.jpg": "y~1", "z.png": "z"}
    manifest.write_plan({"b.png": "b~2", "a.png": "a"})
    assert manifest.planned() == {"a.png": "a", "b.png": "b~2"}


def test_reading_records_pauses_the_garbage_collector_only_while_it_reads(tmp_path, monkeypatch) -> None:
    import gc

    manifest = Manifest(tmp_path)
    for k in range(3):
        manifest.write_record({"rel": f"a/{k}.png", "status": "done"})
    (manifest.records_dir / "broken.json").write_text("{not json")
    seen = []
    monkeypatch.setattr(json, "load", lambda file: seen.append(gc.isenabled()) or json.loads(file.read()))
    assert sorted(manifest.read_records()) == ["a/0.png", "a/1.png", "a/2.png"]  # the broken one is skipped
    assert seen == [False] * 4 and gc.isenabled()
    gc.disable()
    try:
        manifest.read_records()
        assert not gc.isenabled()  # left as the caller had it
    finally:
        gc.enable()
