"""grounded-sam label, end to end on a folder of synthetic scenes with a scripted pipeline."""

from __future__ import annotations

import json
from collections import Counter

import pytest
import yaml
from typer.testing import CliRunner

from grounded_sam import api
from grounded_sam.cli import app
from tests.labeling.helpers import CORRUPT, ONTOLOGY, scripted_pipeline_for, write_folder

runner = CliRunner()


@pytest.fixture
def images(tmp_path, monkeypatch):
    folder = tmp_path / "in"
    write_folder(folder, n=4)
    built = []

    def fake_default_pipeline(*names):
        built.append(names)
        return scripted_pipeline_for(str(folder))

    monkeypatch.setattr(api, "default_pipeline", fake_default_pipeline)
    return folder, built


def test_label_to_yolo_with_split_and_contact_sheet(images, tmp_path) -> None:
    folder, built = images
    out = tmp_path / "ds"
    args = ["label", str(folder), "--classes", "red circle, blue square", "-o", str(out), "-f", "yolo"]
    result = runner.invoke(app, [*args, "--split", "0.5,0.5", "--contact-sheet", "--sam", "tiny"])
    assert result.exit_code == 1, result.output  # one image failed (the corrupt PNG)
    assert built == [("tiny", None, None, "float32")]
    output = " ".join(result.output.split())
    assert "red circle" in output and "labelled 4 of 5 images" in output
    assert f"failed {CORRUPT}" in output
    assert "skipped 4 file(s)" in output and "skipped 1 file(s), e.g. notes.txt" in output
    data = yaml.safe_load((out / "data.yaml").read_text())
    assert data["names"] == {0: "red circle", 1: "blue square"}
    assert (out / "contact_sheet.png").is_file()
    again = runner.invoke(app, [*args, "--split", "0.5,0.5", "--sam", "tiny"])
    assert again.exit_code == 1 and "4 were already done" in " ".join(again.output.split())
    assert "val is the training set" not in output


def test_single_yolo_split_says_val_is_train(images, tmp_path) -> None:
    folder, _ = images
    out = tmp_path / "ds"
    result = runner.invoke(app, ["label", str(folder), "-c", "red circle", "-o", str(out), "-f", "yolo"])
    assert result.exit_code == 1, result.output  # the corrupt PNG failed
    assert "data.yaml's val is the training set" in " ".join(result.output.split())
    assert "val is the training set" in (out / "data.yaml").read_text()


def test_ontology_file_and_changed_settings(images, tmp_path) -> None:
    folder, _ = images
    onto = tmp_path / "onto.yaml"
    onto.write_text(yaml.safe_dump(ONTOLOGY))
    out = tmp_path / "ds"
    base = ["label", str(folder), "--ontology", str(onto), "-o", str(out)]
    assert runner.invoke(app, base).exit_code == 1  # the corrupt PNG failed
    coco = json.loads((out / "annotations" / "instances_train.json").read_text())
    assert [c["name"] for c in coco["categories"]] == ["disc", "box"]
    changed = runner.invoke(app, [*base, "--box-threshold", "0.5"])
    assert changed.exit_code == 2 and "other settings" in changed.output and "--overwrite" in changed.output
    replaced = runner.invoke(app, [*base, "--box-threshold", "0.5", "--overwrite", "-f", "masks"])
    assert replaced.exit_code == 1, replaced.output
    assert (out / "classes.json").is_file() and not (out / "annotations").exists()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ([], "exactly one of --classes and --ontology"),
        (["--classes", "a", "--ontology", "o.yaml"], "exactly one"),
        (["--classes", "a", "-f", "voc"], "voc"),
        (["--classes", "a", "--split", "0.5,0.1"], "sum to 1"),
        (["--ontology", "missing.yaml"], "does not exist"),
    ],
)
def test_bad_input_is_explained(images, tmp_path, extra, message) -> None:
    folder, _ = images
    result = runner.invoke(app, ["label", str(folder), "-o", str(tmp_path / "ds"), *extra])
    assert result.exit_code == 2
    assert message in " ".join(result.output.split())


def test_quality_rule_options_and_the_drop_summary(images, tmp_path) -> None:
    folder, _ = images
    out = tmp_path / "ds"
    args = ["label", str(folder), "-c", "red circle, blue square", "-o", str(out), "--max-per-image", "1"]
    result = runner.invoke(
        app, [*args, "--negative", "red square", "--agnostic-nms", "0.6", "--min-area", "0"]
    )
    assert result.exit_code == 1, result.output  # the corrupt PNG failed
    output = " ".join(result.output.split())
    lines = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    dropped = Counter(c["rule"] for line in lines for c in line["candidates"] if not c["kept"])
    assert all(len([c for c in line["candidates"] if c["kept"]]) <= 1 for line in lines)
    assert dropped and "candidates dropped by rule: " in output
    for rule, count in dropped.items():
        assert f"{rule} {count}" in output
    settings = json.loads((out / ".labeling" / "settings.json").read_text())["settings"]
    assert settings["rules"] == {
        "negatives": ["red square"],
        "agnostic_nms": 0.6,
        "min_area": 0,
        "max_per_image": 1,
    }
    bad = runner.invoke(app, [*args[:-2], "-o", str(tmp_path / "x"), "--min-area", "2"])
    assert bad.exit_code == 2 and "min_area must lie in [0, 1]" in " ".join(bad.output.split())


@pytest.mark.parametrize(
    ("fmt", "files"), [("label-studio", ["tasks.json", "label_config.xml"]), ("cvat", ["annotations.xml"])]
)
def test_labelling_tool_formats(images, tmp_path, fmt, files) -> None:
    folder, _ = images
    out = tmp_path / "ds"
    result = runner.invoke(
        app, ["label", str(folder), "-c", "red circle, blue square", "-o", str(out), "-f", fmt]
    )
    assert result.exit_code == 1, result.output  # the corrupt PNG failed
    assert all((out / name).stat().st_size > 0 for name in files)
