"""Hostile file names and prompts through predict / everything / label / inpaint (and markup through every
command that prints user text): every good image gets its own output, every bad one is named in the
report with its reason, symbolic links do not lead out of the input tree, exit codes as documented."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from grounded_sam import api
from grounded_sam.cli import app
from grounded_sam.naming import printable, short_hash
from tests.pipelines import SCENE, scripted_pipeline

runner = CliRunner()
LONGEST = "中" * 83 + "ab.png"  # 255 bytes, the longest legal name
GOOD = [
    "dup.png",
    "dup_1.png",
    "nested/dup.png",
    "nested/dup.jpg",
    "scan [red].png",
    "broken[/red]markup.png",  # a folder "broken[" holding "red]markup.png": the path reads as markup
    "[bold]b.png",
    LONGEST,
    "with space.png",
    "new\nline.png",
    "-dash.png",
    "caf\udce9.png",  # not UTF-8
    "link.png",  # a symbolic link to dup.png, inside the tree: followed
]
BAD = "bad.png"
ESCAPE = "escape.png"  # a symbolic link to a file outside the tree: not followed
PROMPT = f"[/bold] {SCENE.labels[0]}. {SCENE.labels[1]}"


@pytest.fixture
def hostile(tmp_path, monkeypatch) -> Path:
    monkeypatch.setattr(api, "default_pipeline", lambda *args: scripted_pipeline())
    folder = tmp_path / "in"
    (folder / "nested").mkdir(parents=True)
    (folder / "broken[").mkdir()
    for name in GOOD[:-1]:
        Image.fromarray(SCENE.image).save(os.fsencode(folder / name), format="PNG")
    (folder / "link.png").symlink_to(folder / "dup.png")
    (folder / BAD).write_bytes(b"\x89PNG\r\n\x1a\n not really")
    Image.fromarray(SCENE.image).save(tmp_path / "outside.png")
    (folder / ESCAPE).symlink_to(tmp_path / "outside.png")
    return folder


def said(result) -> str:
    return " ".join(result.output.split())


def check_report(result, out: Path) -> None:
    assert result.exit_code == 1, result.output  # one image failed: documented as 1
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    text = said(result)
    assert f"failed {printable(str(out.parent / 'in' / BAD))}" in text
    assert "escape.png: symbolic link to a file outside the folder; not followed" in text
    assert "scan [red].png" in text and "caf\\xe9.png" in text  # shown, not swallowed or crashed on


@pytest.mark.parametrize("command", ["predict", "everything"])
def test_every_good_image_gets_its_own_output(hostile, tmp_path, command) -> None:
    out = tmp_path / "out"
    args = [command, str(hostile), "-o", str(out), "-f", "json"]
    args += ["-p", PROMPT] if command == "predict" else ["--points-per-side", "4"]
    result = runner.invoke(app, args)
    check_report(result, out)
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    done = [entry for entry in manifest["images"] if "outputs" in entry]
    failed = [entry for entry in manifest["images"] if "failed" in entry]
    assert len(done) == len(GOOD) and [Path(e["source"]).name for e in failed] == [BAD]
    outputs = [entry["outputs"][0] for entry in done]
    assert len(set(outputs)) == len(GOOD)  # no two inputs share an output
    for output in outputs:
        assert json.loads((out / output).read_text())["image_size"] == [120, 160]
        assert all(len(os.fsencode(part)) <= 255 for part in output.split("/"))
    sources = {Path(e["source"]).name for e in done}
    assert {"caf\\xe9.png", "new\\nline.png", LONGEST, "link.png"} <= sources  # originals, readable


def test_label_gives_every_good_image_its_own_files(hostile, tmp_path) -> None:
    out = tmp_path / "ds"
    result = runner.invoke(app, ["label", str(hostile), "-c", PROMPT.replace(".", ","), "-o", str(out)])
    assert result.exit_code == 1, result.output
    text = said(result)
    # nested/dup.png beside nested/dup.jpg: both labelled, the later one as nested/dup~<hash of its path>
    labelled = len(GOOD)
    assert f"labelled {labelled} of {labelled + 1} images" in text and "failed bad.png" in text
    assert "same name" not in text
    assert "escape.png: symbolic link to a file outside the image folder; not followed" in text
    coco = json.loads((out / "annotations" / "instances_train.json").read_text())
    names = [image["file_name"] for image in coco["images"]]
    assert len(set(names)) == labelled and {
        "nested/dup.jpg",
        f"nested/dup~{short_hash('nested/dup.png')}.png",
    } <= set(names)
    for name in names:
        assert (out / "images" / "train" / name).is_file()
        assert all(len(os.fsencode(part)) <= 255 for part in name.split("/"))
        name.encode("utf-8")
    again = runner.invoke(app, ["label", str(hostile), "-c", PROMPT.replace(".", ","), "-o", str(out)])
    assert again.exit_code == 1 and f"{labelled} were already done" in said(again)


@pytest.mark.parametrize("name", ["scan [red].png", "caf\udce9.png", LONGEST, "new\nline.png"])
def test_inpaint_takes_any_name_and_a_markup_prompt(hostile, tmp_path, name) -> None:
    out = tmp_path / "edited" / "[red]out.png"
    result = runner.invoke(app, ["inpaint", str(hostile / name), "-p", PROMPT, "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert Image.open(out).size == (160, 120) and "[red]out.png" in "".join(result.output.splitlines())


def test_markup_in_prompts_and_names_never_reaches_the_console_as_markup(hostile, tmp_path) -> None:
    image = hostile / "broken[/red]markup.png"
    for args, echoed in (
        (["predict", str(image), "-p", PROMPT, "-o", str(tmp_path / "p")], "'[/bold] orange"),
        (["everything", str(image), "--points-per-side", "4", "-o", str(tmp_path / "e")], "red]markup.png"),
        (
            ["inpaint", str(image), "-p", "[/red] nothing here", "-o", str(tmp_path / "i.png")],
            "[/red] nothing",
        ),
        (["track", str(tmp_path / "[/b]missing.mp4"), "-p", PROMPT], "[/b]missing.mp4"),
        (["label", str(tmp_path / "[/b]missing"), "-c", "x", "-o", str(tmp_path / "l")], "[/b]missing"),
    ):
        result = runner.invoke(app, args)
        assert result.exception is None or isinstance(result.exception, SystemExit), (args, result.exception)
        assert result.exit_code in (0, 1, 2), (args, result.output)
        assert echoed in "".join(result.output.splitlines()), (args, result.output)  # printed as typed
