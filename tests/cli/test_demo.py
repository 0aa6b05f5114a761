"""grounded-sam demo and eval on the shipped demo model."""

from __future__ import annotations

import json
import re

from PIL import Image
from typer.testing import CliRunner

from grounded_sam.cli import app
from grounded_sam.demo import DEMO_BOX_THRESHOLD

runner = CliRunner()


def test_demo_finds_the_prompt_and_writes_its_files(tmp_path) -> None:
    result = runner.invoke(app, ["demo", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "'red circle': 1 found" in result.output
    found = json.loads((tmp_path / "result.json").read_text())
    assert [item["label"] for item in found["instances"]] == ["red circle"]
    assert Image.open(tmp_path / "result_overlay.png").size == (256, 256)


def test_demo_on_a_given_image(tmp_path) -> None:
    from grounded_sam.data import make_scene

    path = tmp_path / "scene.png"
    Image.fromarray(make_scene(61).image).save(path)
    result = runner.invoke(
        app, ["demo", "--image", str(path), "-p", "blue circle", "--out", str(tmp_path / "o")]
    )
    assert result.exit_code == 0, result.output
    assert (tmp_path / "o" / "result_overlay.png").exists()


def test_eval_prints_box_and_text_metrics() -> None:
    result = runner.invoke(app, ["eval", "--scenes", "4", "--seed", "777"])
    assert result.exit_code == 0, result.output
    assert "box-prompt mask mIoU" in result.output and "text-prompt recall" in result.output
    assert f"box threshold {DEMO_BOX_THRESHOLD:g}" in result.output
    assert f"{DEMO_BOX_THRESHOLD:g} (default)" in result.output
    assert "text prompts by threshold" in result.output
    said = " ".join(result.output.split())
    assert "broad phrases: precision" in said and "broad phrases by threshold" in said
    row = re.search(r"broad phrases: recall \(box threshold [0-9.]+\) │ ([0-9.]+)", said)
    assert row is not None and 0.0 < float(row.group(1)) <= 1.0  # the demo finds broad phrases too


def test_train_demo_hands_the_new_sam_to_the_clip_stage(tmp_path, monkeypatch) -> None:
    import grounded_sam.train.__main__ as train_module

    calls = []
    monkeypatch.setattr(train_module, "main", lambda argv: calls.append(argv) or 0)
    result = runner.invoke(app, ["train-demo", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    sam, clip = calls
    assert sam == ["sam", "--out", str(tmp_path / "demo_sam")]
    assert clip[:3] == ["clip", "--out", str(tmp_path / "demo_clip")]
    assert clip[clip.index("--sam-weights") + 1] == str(tmp_path / "demo_sam" / "demo_sam.safetensors")
    assert "--no-resume" in clip and int(clip[clip.index("--threads") + 1]) >= 1
    assert clip[clip.index("--data-workers") + 1] == "1"
