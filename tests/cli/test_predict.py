"""grounded-sam predict, end to end on a temp folder with a scripted detector and a tiny random SAM."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image
from pycocotools.coco import COCO
from typer.testing import CliRunner

from grounded_sam import api
from grounded_sam.cli import app
from grounded_sam.pipeline import GroundedSAM
from grounded_sam.text.base import Detections, Segments
from tests.pipelines import SCENE, scripted_pipeline

runner = CliRunner()


@pytest.fixture
def images(tmp_path, monkeypatch):
    monkeypatch.setattr(api, "default_pipeline", lambda *args: scripted_pipeline())
    folder = tmp_path / "in"
    (folder / "sub").mkdir(parents=True)
    Image.fromarray(SCENE.image).save(folder / "a.png")
    Image.fromarray(SCENE.image).save(folder / "sub" / "a.jpg")
    return folder


def test_overlay_for_every_image_in_a_folder(images, tmp_path) -> None:
    out = tmp_path / "out"
    result = runner.invoke(app, ["predict", str(images), "--prompt", SCENE.labels[0], "--out", str(out)])
    assert result.exit_code == 0, result.output
    written = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert written == ["a_overlay.png", "manifest.json", "sub/a_overlay.png"]  # mirrors the input tree
    assert Image.open(out / "a_overlay.png").size == (160, 120)


def test_coco_output_loads_in_pycocotools(images, tmp_path) -> None:
    out = tmp_path / "out"
    args = ["predict", str(images / "a.png"), "-p", ". ".join(SCENE.labels), "-o", str(out), "-f", "coco"]
    assert runner.invoke(app, args).exit_code == 0
    coco = COCO(str(out / "a.coco.json"))
    assert len(coco.getAnnIds()) == len(SCENE.labels)
    assert {c["name"] for c in coco.loadCats(coco.getCatIds())} == set(SCENE.labels)


def test_unreadable_input_fails_clearly_and_others_still_run(images, tmp_path) -> None:
    (images / "broken.png").write_bytes(b"not an image at all")
    out = tmp_path / "out"
    result = runner.invoke(app, ["predict", str(images), "-p", SCENE.labels[0], "-o", str(out), "-f", "json"])
    assert result.exit_code == 1
    assert "broken.png" in result.output
    assert sorted(p.name for p in out.rglob("*.json")) == ["a.json", "a.json", "manifest.json"]
    assert json.loads((out / "a.json").read_text())
    manifest = json.loads((out / "manifest.json").read_text())
    failed = [entry for entry in manifest["images"] if "failed" in entry]
    assert [e["source"] for e in failed] == [str(images / "broken.png")] and failed[0]["failed"]


def test_bad_format_and_empty_folder(images, tmp_path) -> None:
    result = runner.invoke(app, ["predict", str(images), "-p", "x", "-f", "bmp"])
    assert result.exit_code != 0 and "bmp" in result.output
    empty = tmp_path / "empty"
    empty.mkdir()
    result = runner.invoke(app, ["predict", str(empty), "-p", "x"])
    assert result.exit_code == 2 and "No images" in result.output


class _TwoScenes:
    """A text segmenter giving SCENE's truth on SCENE's image and only its yellow square on any other."""

    def segment(self, image, phrases, *, box_threshold=None, text_threshold=None) -> Segments:
        keep = [
            i
            for i, label in enumerate(SCENE.labels)
            if label in phrases and (label == "yellow square" or np.array_equal(image, SCENE.image))
        ]
        ids = [list(phrases).index(SCENE.labels[i]) for i in keep]
        detections = Detections(SCENE.boxes[keep], np.full(len(keep), 0.8), ids, tuple(phrases))
        return Segments(detections, SCENE.masks[keep], np.full(len(keep), 0.7))


@pytest.fixture
def two_scenes(tmp_path, monkeypatch):
    monkeypatch.setattr(api, "default_pipeline", lambda *args: GroundedSAM(_TwoScenes()))
    folder = tmp_path / "in"
    (folder / "sub").mkdir(parents=True)
    Image.fromarray(SCENE.image).save(folder / "a.png")
    Image.fromarray(SCENE.image[::-1].copy()).save(folder / "sub" / "b.png")
    return folder


PROMPT = "yellow square. orange cross. black circle"  # ids from this order, not from each image's labels


def test_yolo_class_ids_come_from_the_prompt_and_hold_across_a_folder(two_scenes, tmp_path) -> None:
    out = tmp_path / "out"
    result = runner.invoke(app, ["predict", str(two_scenes), "-p", PROMPT, "-o", str(out), "-f", "yolo"])
    assert result.exit_code == 0, result.output
    assert (out / "classes.txt").read_text().split("\n")[:3] == [
        "yellow square",
        "orange cross",
        "black circle",
    ]
    a = [int(line.split()[0]) for line in (out / "a.txt").read_text().splitlines()]
    b = [int(line.split()[0]) for line in (out / "sub" / "b.txt").read_text().splitlines()]
    assert a == [{"orange cross": 1, "black circle": 2, "yellow square": 0}[x] for x in SCENE.labels]
    assert b == [0]  # the yellow square alone: still class 0, not renumbered per image
    assert not list(out.glob("*.classes.txt"))


def test_png_and_coco_class_ids_hold_across_a_folder(two_scenes, tmp_path) -> None:
    for format in ("png", "coco"):
        out = tmp_path / format
        args = ["predict", str(two_scenes), "-p", PROMPT, "-o", str(out), "-f", format]
        assert runner.invoke(app, args).exit_code == 0
    legend_b = (tmp_path / "png" / "sub" / "b_labels.txt").read_text()
    assert "1" in legend_b and "yellow square" in legend_b
    labels_b = np.asarray(Image.open(tmp_path / "png" / "sub" / "b_labels.png"))
    assert set(np.unique(labels_b)) == {0, 1}
    labels_a = np.asarray(Image.open(tmp_path / "png" / "a_labels.png"))
    assert set(np.unique(labels_a)) == {0, 1, 2, 3}
    for stem in ("a", "sub/b"):
        coco = COCO(str(tmp_path / "coco" / f"{stem}.coco.json"))
        names = {c["id"]: c["name"] for c in coco.loadCats(coco.getCatIds())}
        assert names == {1: "yellow square", 2: "orange cross", 3: "black circle"}


def test_coco_file_name_is_the_path_relative_to_the_folder(two_scenes, tmp_path) -> None:
    out = tmp_path / "out"
    assert (
        runner.invoke(app, ["predict", str(two_scenes), "-p", PROMPT, "-o", str(out), "-f", "coco"]).exit_code
        == 0
    )
    assert COCO(str(out / "sub" / "b.coco.json")).loadImgs(1)[0]["file_name"] == "sub/b.png"
    assert COCO(str(out / "a.coco.json")).loadImgs(1)[0]["file_name"] == "a.png"
    single = tmp_path / "single"
    args = ["predict", str(two_scenes / "sub" / "b.png"), "-p", PROMPT, "-o", str(single), "-f", "coco"]
    assert runner.invoke(app, args).exit_code == 0
    assert COCO(str(single / "b.coco.json")).loadImgs(1)[0]["file_name"] == "b.png"


def test_a_missing_input_is_said_before_any_model_loads(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(api, "default_pipeline", None)  # must not be called
    result = runner.invoke(app, ["predict", str(tmp_path / "nope.jpg"), "-p", "red circle"])
    assert result.exit_code == 2
    said = " ".join(result.output.split())
    assert "No such file or folder" in said and "nope.jpg" in said and "img/s" not in said


def test_missing_weights_name_the_command_line_option(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("GROUNDED_SAM_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    Image.fromarray(SCENE.image).save(tmp_path / "a.png")
    result = runner.invoke(app, ["predict", str(tmp_path / "a.png"), "-p", "x", "--sam", "sam_vit_b"])
    said = " ".join(result.output.split())
    assert result.exit_code == 2 and "sam_vit_b_01ec64.pth" in said
    assert "--sam with the path" in said and "checkpoint=" not in said


def test_a_full_disk_stops_with_one_message_and_ctrl_c_exits_130(images, tmp_path, monkeypatch) -> None:
    import errno

    from grounded_sam import export

    out = tmp_path / "out"
    real = export.save_result

    def full(result, folder, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(folder / "x.json"))

    monkeypatch.setattr(export, "save_result", full)
    result = runner.invoke(app, ["predict", str(images), "-p", SCENE.labels[0], "-o", str(out), "-f", "json"])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    said = " ".join(result.output.split())
    assert result.exit_code == 2 and f"cannot write to {out}: the disk is full" in said, said
    calls = []

    def interrupted(result, folder, *args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(result, folder, *args, **kwargs)

    monkeypatch.setattr(export, "save_result", interrupted)
    result = runner.invoke(app, ["predict", str(images), "-p", SCENE.labels[0], "-o", str(out), "-f", "json"])
    assert result.exit_code == 130 and "Interrupted" in result.output, result.output
    manifest = json.loads((out / "manifest.json").read_text())
    assert [entry["outputs"] for entry in manifest["images"]] == [["a.json"]]  # what was done, listed
