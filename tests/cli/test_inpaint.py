"""grounded-sam inpaint: find the prompt's objects with a scripted pipeline and remove (or replace) them."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from grounded_sam import api
from grounded_sam.cli import app
from grounded_sam.inpaint import dilate_mask, inpaint
from tests.pipelines import SCENE, scripted_pipeline

runner = CliRunner()


@pytest.fixture
def pipeline_calls(monkeypatch) -> list[tuple]:
    calls: list[tuple] = []
    monkeypatch.setattr(api, "default_pipeline", lambda *args: calls.append(args) or scripted_pipeline())
    return calls


@pytest.fixture
def scene_file(tmp_path, pipeline_calls):
    path = tmp_path / "scene.png"
    Image.fromarray(SCENE.image).save(path)
    return path


def test_remove_writes_an_image_changed_only_near_the_found_objects(
    scene_file, pipeline_calls, tmp_path
) -> None:
    out = tmp_path / "out" / "clean.png"
    label = SCENE.labels[1]
    args = [
        "inpaint",
        str(scene_file),
        "--prompt",
        label,
        "--out",
        str(out),
        "--dilate",
        "3",
        "--device",
        "cpu",
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert f"of {label} removed" in result.output
    edited = np.asarray(Image.open(out))
    found = scripted_pipeline().predict(SCENE.image, label)
    assert len(found) >= 1
    np.testing.assert_array_equal(edited, inpaint(SCENE.image, found.masks, dilate=3))
    changed = (edited != SCENE.image).any(axis=2)
    assert changed.any() and not changed[~dilate_mask(found.masks.any(axis=0), 3)].any()
    assert pipeline_calls == [(None, None, "cpu", "float32")]


def test_nothing_found_writes_nothing(scene_file, tmp_path) -> None:
    out = tmp_path / "clean.png"
    result = runner.invoke(app, ["inpaint", str(scene_file), "-p", "unicorn", "-o", str(out)])
    assert result.exit_code == 1 and "Nothing found" in result.output
    assert not out.exists()


def test_bad_arguments(scene_file, tmp_path) -> None:
    result = runner.invoke(app, ["inpaint", str(scene_file), "-p", "x", "-o", str(tmp_path / "a.nope")])
    assert result.exit_code != 0 and "image suffix" in result.output
    result = runner.invoke(
        app, ["inpaint", str(scene_file), "-p", "x", "-o", str(tmp_path / "a.png"), "--method", "x"]
    )
    assert result.exit_code != 0 and "telea or ns" in result.output
    result = runner.invoke(
        app, ["inpaint", str(tmp_path / "missing.png"), "-p", "x", "-o", str(tmp_path / "a.png")]
    )
    assert result.exit_code == 2 and "does not exist" in " ".join(result.output.split())


def test_replace_without_a_model_says_what_to_configure(
    scene_file, tmp_path, monkeypatch, pipeline_calls
) -> None:
    pytest.importorskip("diffusers")
    monkeypatch.setenv("GROUNDED_SAM_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("GROUNDED_SAM_INPAINT_MODEL", raising=False)
    out = tmp_path / "bike.png"
    args = ["inpaint", str(scene_file), "-p", SCENE.labels[0], "--replace-with", "a bicycle", "-o", str(out)]
    result = runner.invoke(app, args)
    assert result.exit_code == 2
    assert "GROUNDED_SAM_INPAINT_MODEL" in result.output and not out.exists()
    said = " ".join(result.output.split())
    assert "--inpaint-model" in said and "checkpoint=" not in said
    assert pipeline_calls == []  # said before any detection model was built
