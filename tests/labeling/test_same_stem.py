"""Images whose paths differ only in the suffix (``a/dup.png`` beside ``a/dup.jpg``) each get their own
dataset files in every format, under names that a resumed run keeps (`grounded_sam.naming.claim_stems`)."""

from __future__ import annotations

import itertools
import json
import os
import shutil
import signal
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from pycocotools.coco import COCO

from grounded_sam.labeling.manifest import DATASET_FORMATS
from grounded_sam.naming import short_hash
from tests.labeling.helpers import Truth, factory, tree_bytes, write_folder
from tests.labeling.test_faults import killed_run, run, temp_files

DUPS = ("a/dup.png", "a/dup.jpg", "dup.png")  # PNG bytes in all three: the ground truth is keyed on pixels
LATER = f"a/dup~{short_hash('a/dup.png')}"  # a/dup.jpg sorts first and keeps the plain stem


@pytest.fixture(scope="module")
def dups(tmp_path_factory) -> tuple[Path, Path, dict[str, Truth]]:
    """The image folder with `DUPS` (three different scenes), the scene folder, the truth by name."""
    scenes = tmp_path_factory.mktemp("scenes")
    truth = write_folder(scenes, n=3)
    folder = tmp_path_factory.mktemp("dups")
    (folder / "a").mkdir()
    for name, scene in zip(DUPS, sorted(truth), strict=True):
        shutil.copyfile(scenes / scene, folder / name)
    return folder, scenes, {name: truth[scene] for name, scene in zip(DUPS, sorted(truth), strict=True)}


def label(dups, out: Path, fmt: str):
    folder, scenes, _ = dups
    return run(folder, out, fmt, pipeline_factory=factory(scenes, masks="truth"))


def source_of(dups, copy: Path) -> str:
    """Which input `copy` (a file under images/) is a copy of, by its bytes."""
    folder = dups[0]
    return next(name for name in DUPS if (folder / name).read_bytes() == copy.read_bytes())


def yolo_label_path(image: Path) -> Path:
    """Ultralytics' pairing (img2label_paths): /images/ -> /labels/, the suffix -> .txt."""
    head, tail = str(image).rsplit(f"{os.sep}images{os.sep}", 1)
    return Path(f"{head}{os.sep}labels{os.sep}{tail.rsplit('.', 1)[0]}.txt")


def check_format(dups, out: Path, fmt: str) -> None:
    """Every input has one distinct copy under images/ and its own labels, with its own instances."""
    truth = dups[2]
    copies = sorted(p for p in (out / "images").rglob("*") if p.is_file())
    assert sorted(source_of(dups, c) for c in copies) == sorted(DUPS)
    by_copy = {c.relative_to(out / "images").as_posix(): source_of(dups, c) for c in copies}
    assert any(c.endswith(f"{LATER}.png") for c in by_copy) and any(c.endswith("a/dup.jpg") for c in by_copy)
    if fmt == "coco":
        images = {}
        for split_file in sorted((out / "annotations").glob("instances_*.json")):
            coco, split = COCO(str(split_file)), split_file.stem.removeprefix("instances_")
            for image_id, image in coco.imgs.items():
                source = by_copy[f"{split}/{image['file_name']}"]
                images[source] = len(coco.getAnnIds(imgIds=[image_id]))
        assert images == {name: len(truth[name].labels) for name in DUPS}
    elif fmt == "yolo":
        for copy in copies:
            lines = yolo_label_path(copy).read_text().splitlines()
            assert len(lines) == len(truth[source_of(dups, copy)].labels)
    elif fmt == "masks":
        metas = [json.loads(p.read_text()) for p in (out / "masks").rglob("*.json")]
        assert sorted(by_copy[m["image"].split("/", 1)[1]] for m in metas) == sorted(DUPS)
        for meta in metas:
            assert len(meta["instances"]) == len(truth[by_copy[meta["image"].split("/", 1)[1]]].labels)
    elif fmt == "label-studio":
        tasks = json.loads((out / "tasks.json").read_text())
        urls = [t["data"]["image"].split("?d=images/", 1)[1] for t in tasks]
        assert sorted(by_copy[u] for u in urls) == sorted(DUPS)
    else:
        names = [image.get("name") for image in ET.parse(out / "annotations.xml").getroot().iter("image")]
        assert sorted(by_copy[n] for n in names) == sorted(DUPS)


@pytest.mark.parametrize("fmt", DATASET_FORMATS)
def test_same_stem_images_all_get_their_own_files(dups, tmp_path, fmt) -> None:
    out = tmp_path / "ds"
    summary = label(dups, out, fmt)
    assert (summary.labelled, summary.images, summary.skipped) == (3, 3, ())
    check_format(dups, out, fmt)
    records = {
        r["rel"]: r["stem"] for r in map(json.loads, map(Path.read_text, out.rglob("records/**/*.json")))
    }
    assert records == {"a/dup.jpg": "a/dup", "a/dup.png": LATER, "dup.png": "dup"}  # original paths kept
    before = tree_bytes(out)
    again = label(dups, out, fmt)
    assert (again.resumed, again.labelled) == (3, 3)
    assert {k: v for k, v in tree_bytes(out).items() if k != "summary.json"} == {
        k: v for k, v in before.items() if k != "summary.json"
    }


@pytest.mark.parametrize("fmt", ["yolo", "coco"])
def test_killed_anywhere_resumes_to_the_same_names(dups, tmp_path, fmt) -> None:
    reference = tmp_path / "reference"
    label(dups, reference, fmt)
    expected = tree_bytes(reference)
    folder, scenes, _ = dups
    for point in itertools.count(1):  # before every rename, until the run has fewer renames than that
        out = tmp_path / f"killed_{point}"
        status = killed_run(folder, out, fmt, rename=point, pipeline_factory=factory(scenes, masks="truth"))
        if not os.WIFSIGNALED(status):
            assert status == 0 and point > 3 * 3, point  # settings, plan and >= 3 renames per image
            break
        assert os.WTERMSIG(status) == signal.SIGKILL, point
        label(dups, out, fmt)
        assert tree_bytes(out) == expected, f"{fmt}: killed before rename {point}"
        assert temp_files(out) == []


def test_a_new_image_does_not_take_the_names_already_given(dups, tmp_path) -> None:
    folder = tmp_path / "in"
    shutil.copytree(dups[0], folder)
    out = tmp_path / "ds"
    run(folder, out, "yolo", pipeline_factory=factory(dups[1], masks="truth"))
    (folder / "a" / "dup.bmp").write_bytes((folder / "dup.png").read_bytes())  # sorts before a/dup.jpg
    summary = run(folder, out, "yolo", pipeline_factory=factory(dups[1], masks="truth"))
    assert (summary.labelled, summary.resumed) == (4, 3)
    stems = {
        r["rel"]: r["stem"] for r in map(json.loads, map(Path.read_text, out.rglob("records/**/*.json")))
    }
    assert stems["a/dup.jpg"] == "a/dup" and stems["a/dup.bmp"] == f"a/dup~{short_hash('a/dup.bmp')}"
    labels = sorted(p.relative_to(out / "labels").as_posix() for p in (out / "labels").rglob("*.txt"))
    assert len(labels) == 4 and len({p.split("/", 1)[1] for p in labels}) == 4
