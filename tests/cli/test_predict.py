"""grounded-sam predict, end to end on a temp folder with a scripted detector and a tiny random SAM."""

from __future__ import annotations

import json

import pytest
from PIL import Image
from pycocotools.coco import COCO
from typer.testing import CliRunner

from grounded_sam import api
from grounded_sam.cli import app
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
    written = sorted(p.name for p in out.iterdir())
    assert written == ["a_1_overlay.png", "a_overlay.png"]
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
    assert sorted(p.name for p in out.iterdir()) == ["a.json", "a_1.json"]
    assert json.loads((out / "a.json").read_text())


def test_bad_format_and_empty_folder(images, tmp_path) -> None:
    result = runner.invoke(app, ["predict", str(images), "-p", "x", "-f", "bmp"])
    assert result.exit_code != 0 and "bmp" in result.output
    empty = tmp_path / "empty"
    empty.mkdir()
    result = runner.invoke(app, ["predict", str(empty), "-p", "x"])
    assert result.exit_code == 2 and "No images" in result.output
