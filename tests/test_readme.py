"""Every ``grounded-sam`` command of the README names a real sub-command with real options, every
Python snippet compiles, and the snippets that can run offline (the quick start and the ONNX export, on the
embedded demo model) run as written.

The commands are checked for spelling, not run: most need files (photos/, clip.mp4) or weights that
cannot exist here; the commands that do run offline are run by their own CLI tests.
"""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest
import typer

from grounded_sam.cli import app

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCK = re.compile(r"```(\w+)\n(.*?)```", re.S)


def _blocks(language: str) -> list[str]:
    return [body for lang, body in BLOCK.findall(README.read_text()) if lang == language]


def _commands() -> list[str]:
    """Each ``grounded-sam ...`` line of the bash blocks, continuations joined, comments and ``&`` cut."""
    found = []
    for block in _blocks("bash"):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split(" #")[0].strip().rstrip("&").strip()
            if line.startswith("grounded-sam "):
                found.append(line)
    return found


def _expand(command: str) -> list[str]:
    """``grounded-sam demo / eval / train-demo`` stands for three commands."""
    words = command.split()
    if "/" not in words:
        return [command]
    return [f"grounded-sam {name}" for name in " ".join(words[1:]).split(" / ")]


COMMANDS = [one for command in _commands() for one in _expand(command)]


def test_the_readme_has_commands_and_snippets() -> None:
    assert len(COMMANDS) >= 10 and len(_blocks("python")) >= 4


@pytest.mark.parametrize("command", COMMANDS)
def test_every_readme_command_parses(command: str) -> None:
    group = typer.main.get_command(app)
    args = shlex.split(command)[1:]
    sub = group.get_command(None, args[0])  # type: ignore[arg-type]
    assert sub is not None, f"no sub-command {args[0]!r}: {command}"
    # Parsing resolves every option and argument as the command line would, without running anything.
    sub.make_context(args[0], args[1:], resilient_parsing=False)


@pytest.mark.parametrize("snippet", _blocks("python"))
def test_every_readme_python_snippet_compiles(snippet: str) -> None:
    compile(snippet, "README.md", "exec")


def _snippet(marker: str) -> str:
    """The one Python block of the README that holds ``marker``."""
    (found,) = [block for block in _blocks("python") if marker in block]
    return found


def test_the_quick_start_snippet_runs_as_written(tmp_path, monkeypatch) -> None:
    """The README's first snippet, unchanged, on the embedded demo model: a generated scene stands in for
    kitchen.jpg; the result, the overlay and the COCO file it names are there afterwards."""
    from PIL import Image

    from grounded_sam.api import DETECTOR_ENV, SAM_ENV
    from grounded_sam.data import SceneConfig, make_scene
    from grounded_sam.result import Result

    for name in (SAM_ENV, DETECTOR_ENV):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    scene = make_scene(3, SceneConfig(size=(240, 320)))
    Image.fromarray(scene.image).save("kitchen.jpg", quality=95)
    namespace: dict[str, object] = {}
    exec(compile(_snippet("grounded_sam.predict("), "README.md", "exec"), namespace)
    result = namespace["result"]
    assert isinstance(result, Result) and result.image_size == (240, 320)
    assert set(result.labels) <= {"window", "door"}
    assert Image.open("overlay.png").size == (320, 240)
    assert json.loads(Path("out/result.coco.json").read_text())["images"][0]["file_name"] == "kitchen.jpg"


def test_the_onnx_snippet_runs_as_written(tmp_path, monkeypatch) -> None:
    """The README's ONNX snippet, unchanged (``detector`` given: the snippet leaves it to the reader):
    the demo SAM exported, its box decoded in ONNX Runtime, and the pipeline it builds finds an object."""
    from PIL import Image

    from tests.pipelines import SCENE, ScriptedDetector

    monkeypatch.chdir(tmp_path)
    Image.fromarray(SCENE.image).save("photo.jpg", quality=95)
    namespace: dict[str, object] = {"detector": ScriptedDetector(SCENE.boxes, SCENE.labels)}
    exec(compile(_snippet("export_onnx("), "README.md", "exec"), namespace)
    assert Path("exported/demo/config.json").is_file()
    masks = namespace["masks"]
    assert masks.shape == (1, *SCENE.image.shape[:2]) and masks.any()
    found = namespace["pipeline"].predict("photo.jpg", SCENE.labels[0])
    assert len(found) >= 1 and set(found.labels) == {SCENE.labels[0]}
