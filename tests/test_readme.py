"""Every command and snippet of README.md, run as written, in one temporary folder holding the inputs they
name (scenes of coloured shapes from ``grounded_sam.data.make_scene``: photos/, images/, photo.jpg,
scene.png, clip.mp4, onto.yaml from the README's own YAML block), on the embedded demo model.

- The text of each README line is what runs: ``grounded-sam`` lines go through the CLI in this process
  (``shlex.split`` of the line, so the pipeline is built once), the set-up line's last step and the
  server through the installed ``grounded-sam`` command in a subprocess, other shell lines through bash.
- Lines that need weights that cannot exist here (``--sam sam_vit_b``, ``--sam2 sam2.1_hiera_tiny``,
  SAM 3, Grounding DINO) must stop with exit status 2 / ``WeightsNotFoundError`` saying which file to put
  in which folder (an empty ``$GROUNDED_SAM_HOME``, the Hub offline).
- ``serve``, ``app`` and the Review page listen on a free port of 127.0.0.1 instead of 8000 / 8501 (the
  one change made to their lines: ``--port`` and ``--host`` appended, ``8000`` replaced in the curl line
  and the httpx snippet), are polled until healthy and stopped.
- Snippets that leave names to the reader (``detector``, ``padded_image``, ...) get them from the test;
  the prose's ``grounded-sam ...`` spans are parsed (real commands and options), not run.
- Not run: the set-up line's venv and pip steps and ``bash .ci/run`` (the CI runs exactly those, and they
  reinstall the environment this suite runs in), ``grounded-sam eval`` outside ``-m slow`` (100 scenes
  take minutes) and ``train-demo`` (prose only: an hour of training).
"""

from __future__ import annotations

import ast
import hashlib
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import typer
from PIL import Image
from typer.testing import CliRunner

from grounded_sam.cli import app
from grounded_sam.data import make_scene

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCK = re.compile(r"```(\w+)\n(.*?)```", re.S)
SCENE = make_scene(2)  # orange square, green hexagon, green circle, red square: the README's photo.jpg
SERVER_PORT = "8000"


def _blocks(language: str) -> list[str]:
    return [body for lang, body in BLOCK.findall(README.read_text()) if lang == language]


def _shell_lines() -> list[str]:
    """Each line of the bash blocks, continuations joined, comments cut."""
    found = []
    for block in _blocks("bash"):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split(" #")[0].strip()
            if line:
                found.append(line)
    return found


def _commands() -> list[str]:
    """The ``grounded-sam ...`` lines (a trailing ``&`` cut)."""
    return [line.rstrip("&").strip() for line in _shell_lines() if line.startswith("grounded-sam ")]


def _inline_commands() -> list[str]:
    """``grounded-sam ...`` spans of the prose (spelling only: each names a real command and options)."""
    return [span for span in re.findall(r"`(grounded-sam [^`]+)`", README.read_text()) if " / " not in span]


def _snippet(marker: str) -> str:
    """The one Python block of the README that holds ``marker``."""
    (found,) = [block for block in _blocks("python") if marker in block]
    return found


def _line(prefix: str) -> str:
    """The one shell line of the README that is ``prefix``, else the one that starts with it."""
    lines = _shell_lines()
    (found,) = [prefix] if prefix in lines else [line for line in lines if line.startswith(prefix)]
    return found


def _flat(text: str) -> str:
    """Console output with its line wrapping undone."""
    return " ".join(text.split())


@dataclass
class Folder:
    """The shared working folder: README lines run in it once each, in any order the tests ask."""

    path: Path
    home: Path
    ran: dict[str, tuple[int, str]] = field(default_factory=dict)

    def run(self, line: str) -> tuple[int, str]:
        """Exit status and output of the README's ``grounded-sam`` line, through the CLI in this process."""
        if line not in self.ran:
            result = CliRunner().invoke(app, shlex.split(line)[1:])
            self.ran[line] = (result.exit_code, result.output)
        return self.ran[line]


def _prepare(folder: Path) -> None:
    """The inputs the README's lines name."""
    (folder / "photos" / "a").mkdir(parents=True)
    (folder / "images").mkdir()
    Image.fromarray(SCENE.image).save(folder / "photos" / "scene_2.jpg", quality=95)
    Image.fromarray(make_scene(3).image).save(folder / "photos" / "a" / "scene_3.jpg", quality=95)
    for seed in (5, 6):  # blue ring, green cross, yellow ring, ... / green ring, orange star
        Image.fromarray(make_scene(seed).image).save(folder / "images" / f"scene_{seed}.jpg", quality=95)
    Image.fromarray(SCENE.image).save(folder / "photo.jpg", quality=95)
    (folder / "onto.yaml").write_text(_blocks("yaml")[0])
    _write_clip(folder / "clip.mp4")


def _write_clip(path: Path) -> None:
    import cv2

    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 5, SCENE.image.shape[1::-1])
    for _ in range(3):
        writer.write(np.ascontiguousarray(SCENE.image[:, :, ::-1]))
    writer.release()


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Iterator[Folder]:
    from grounded_sam.api import DETECTOR_ENV, SAM_ENV

    root = tmp_path_factory.mktemp("readme")
    home = root / "home"
    home.mkdir()
    (root / "work").mkdir()
    _prepare(root / "work")
    with pytest.MonkeyPatch.context() as patch:
        for name in (SAM_ENV, DETECTOR_ENV):
            patch.delenv(name, raising=False)
        patch.setenv("GROUNDED_SAM_HOME", str(home))
        patch.setenv("HF_HUB_OFFLINE", "1")
        patch.setenv("HF_HOME", str(root / "hf"))
        patch.setenv("COLUMNS", "200")
        patch.chdir(root / "work")
        yield Folder(root / "work", home)


def _cli() -> list[str]:
    """The installed ``grounded-sam`` command (this interpreter's, so the worktree's code runs)."""
    script = Path(sys.executable).with_name("grounded-sam")
    return [str(script)] if script.is_file() else [sys.executable, "-m", "grounded_sam.cli"]


def test_the_readme_has_its_commands_and_snippets() -> None:
    assert len(_commands()) >= 14 and len(_blocks("python")) >= 7 and len(_blocks("yaml")) == 1
    assert _shell_lines().count("bash .ci/run") == 1  # the two set-up commands, and only those
    assert sum(" && pip install -e . && " in line for line in _shell_lines()) == 1


def _parse(command: str, whole: bool) -> None:
    """Resolve every option and argument of ``command`` as the command line would, without running it
    (``whole=False``: arguments may be left out, as prose does)."""
    group = typer.main.get_command(app)
    args = shlex.split(command)[1:]
    sub = group.get_command(None, args[0])  # type: ignore[arg-type]
    assert sub is not None, f"no sub-command {args[0]!r}: {command}"
    sub.make_context(args[0], args[1:], resilient_parsing=not whole)


@pytest.mark.parametrize("command", _commands())
def test_every_readme_command_parses(command: str) -> None:
    _parse(command, whole=True)


@pytest.mark.parametrize("command", _inline_commands())
def test_the_prose_names_real_commands_and_options(command: str) -> None:
    _parse(command, whole=False)


def test_every_readme_command_is_run_below() -> None:
    """A new README line needs its test here: each ``grounded-sam`` line is one this file runs."""
    source = Path(__file__).read_text()
    for command in _commands():
        words = shlex.split(command)
        assert f'"{" ".join(words[:3])}' in source, command


@pytest.mark.parametrize("snippet", _blocks("python"))
def test_every_readme_python_snippet_compiles(snippet: str) -> None:
    compile(snippet, "README.md", "exec")


# --- Set up ------------------------------------------------------------------------------------------


def test_the_set_up_line_ends_with_the_demo(folder: Folder) -> None:
    """The install line's last step, through the installed command: the files the README names."""
    demo = _line("python3 -m venv").split(" && ")[-1]
    assert demo == "grounded-sam demo --out demo-out" == _line("grounded-sam demo")
    done = subprocess.run([*_cli(), *shlex.split(demo)[1:]], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    out = folder.path / "demo-out"
    assert Image.open(out / "result_overlay.png").size == Image.open(out / "result_labels.png").size
    assert list(out.glob("result_mask_*.png"))
    instances = json.loads((out / "result.json").read_text())["instances"]
    assert instances and {one["label"] for one in instances} == {"red circle"}


# --- Use it ------------------------------------------------------------------------------------------


def test_the_quick_start_snippet_finds_the_shapes(folder: Folder) -> None:
    from grounded_sam.result import Result

    namespace: dict[str, object] = {}
    exec(compile(_snippet("grounded_sam.predict("), "README.md", "exec"), namespace)
    result = namespace["result"]
    assert isinstance(result, Result) and result.image_size == SCENE.image.shape[:2]
    assert sorted(result.labels) == ["green circle", "red square"]
    assert result.masks.shape == (2, *SCENE.image.shape[:2]) and result.masks.any(axis=(1, 2)).all()
    assert Image.open("overlay.png").size == SCENE.image.shape[1::-1]
    coco = json.loads(Path("out/result.coco.json").read_text())
    assert coco["images"][0]["file_name"] == "scene.png" and len(coco["annotations"]) == 2


def test_the_demo_model_finds_no_window_and_says_so(folder: Folder) -> None:
    """The prose after the quick start: the real-weights example, on the demo model, is empty and warns."""
    import grounded_sam

    call = re.search(r'`(grounded_sam\.predict\("kitchen\.jpg", "window\. door"\))`', README.read_text())
    assert call is not None
    with pytest.warns(UserWarning, match="never taught these words.*window"):
        result = eval(call.group(1).replace("kitchen.jpg", "photo.jpg"), {"grounded_sam": grounded_sam})
    assert len(result) == 0 and result.image_size == SCENE.image.shape[:2]


def _run_each_statement(snippet: str) -> tuple[list[Exception], int]:
    """Each top-level statement of ``snippet`` in turn; a statement that raises leaves the names it would
    have bound unset, and statements that read them are not run. Returns the errors and the count run."""
    namespace: dict[str, object] = {}
    unset: set[str] = set()
    errors, ran = [], 0
    for statement in ast.parse(snippet).body:
        names = {node.id for node in ast.walk(statement) if isinstance(node, ast.Name)}
        bound = {
            n.id for n in ast.walk(statement) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)
        }
        if names & unset:
            unset |= bound
            continue
        ran += 1
        try:
            exec(compile(ast.Module([statement], []), "README.md", "exec"), namespace)
        except Exception as error:
            errors.append(error)
            unset |= bound
    return errors, ran


WEIGHTS_SNIPPETS = {
    'from_pretrained("sam_vit_b"': ["put 'sam_vit_b_01ec64.pth' in {home}"],
    "SamPredictor(build_sam(": ["put 'sam_vit_b_01ec64.pth' in {home}"],
    "from_sam3(": [
        "'facebook/sam3' in the folder {home}/sam3",
        "'facebook/sam2.1-hiera-tiny' in the folder {home}/sam2.1-hiera-tiny",
        "'facebook/sam2.1-hiera-tiny' in the folder {home}/sam2.1-hiera-tiny",
    ],
}


@pytest.mark.parametrize("marker", list(WEIGHTS_SNIPPETS))
def test_the_snippets_that_need_weights_say_which_file_to_put_where(folder: Folder, marker: str) -> None:
    """Run statement by statement: every statement that loads weights fails with the one clear error
    (not a deep traceback of another type), the imports before it work."""
    from grounded_sam.weights import WeightsNotFoundError

    errors, ran = _run_each_statement(_snippet(marker))
    expected = [text.format(home=folder.home) for text in WEIGHTS_SNIPPETS[marker]]
    assert ran > len(errors) and len(errors) == len(expected), errors
    for error, text in zip(errors, expected, strict=True):
        assert isinstance(error, WeightsNotFoundError) and text in str(error), error


# --- Command line ------------------------------------------------------------------------------------


def test_predict_photos(folder: Folder) -> None:
    """Outputs mirror the input tree; the COCO files hold the phrases found; the manifest lists both."""
    code, output = folder.run(_line("grounded-sam predict photos/"))
    assert code == 0, output
    coco = json.loads((folder.path / "out" / "scene_2.coco.json").read_text())
    names = {c["id"]: c["name"] for c in coco["categories"]}
    assert sorted(names[a["category_id"]] for a in coco["annotations"]) == ["green circle", "red square"]
    assert (folder.path / "out" / "a" / "scene_3.coco.json").is_file()
    manifest = (folder.path / "out" / "manifest.json").read_text()
    assert "photos/scene_2.jpg" in manifest and "photos/a/scene_3.jpg" in manifest


def test_everything_photo(folder: Folder) -> None:
    folder.run(_line("grounded-sam predict photos/"))  # README order: both write out/
    code, output = folder.run(_line("grounded-sam everything photo.jpg"))
    assert code == 0, output
    overlay = np.asarray(Image.open(folder.path / "out" / "photo_overlay.png").convert("RGB"))
    assert overlay.shape == SCENE.image.shape and "red square" in output and "green circle" in output


def _yolo_labels(dataset: Path) -> dict[str, list[int]]:
    return {
        path.stem: [int(line.split()[0]) for line in path.read_text().splitlines()]
        for path in sorted((dataset / "labels" / "train").glob("*.txt"))
    }


def test_label_images_as_yolo(folder: Folder) -> None:
    code, output = folder.run(_line("grounded-sam label images/ --classes"))
    assert code == 0, output
    data = (folder.path / "dataset" / "data.yaml").read_text()
    assert '0: "blue ring"' in data and '1: "green cross"' in data and '2: "orange star"' in data
    labels = _yolo_labels(folder.path / "dataset")
    assert {name: sorted(ids) for name, ids in labels.items()} == {"scene_5": [0, 1], "scene_6": [2]}


def test_review_export(folder: Folder) -> None:
    """Nothing reviewed yet: the export holds the images and no labels (approved and edited ones only)."""
    folder.run(_line("grounded-sam label images/ --classes"))
    code, output = folder.run(_line("grounded-sam review dataset --export reviewed"))
    assert code == 0, output
    assert sorted(p.name for p in (folder.path / "reviewed" / "images" / "train").iterdir()) == [
        "scene_5.jpg",
        "scene_6.jpg",
    ]
    assert _yolo_labels(folder.path / "reviewed") == {"scene_5": [], "scene_6": []}


def test_inpaint_photo(folder: Folder) -> None:
    """The red square is painted over; the pixels far from it are the photo's."""
    code, output = folder.run(_line("grounded-sam inpaint photo.jpg"))
    assert code == 0, output
    before = np.asarray(Image.open(folder.path / "photo.jpg").convert("RGB")).astype(int)
    after = np.asarray(Image.open(folder.path / "no-square.png").convert("RGB")).astype(int)
    square = SCENE.masks[SCENE.labels.index("red square")]
    assert after.shape == before.shape
    assert np.abs(after - before)[square].mean() > 40
    assert np.abs(after - before)[~_grown(square, 8)].mean() < 2


def _grown(mask: np.ndarray, pixels: int) -> np.ndarray:
    from scipy.ndimage import binary_dilation

    return binary_dilation(mask, iterations=pixels)


def test_track_without_sam2_says_what_to_download(folder: Folder) -> None:
    code, output = folder.run(_line("grounded-sam track clip.mp4"))
    expected = f"'facebook/sam2.1-hiera-tiny' in the folder {folder.home}/sam2.1-hiera-tiny"
    assert code == 2 and expected in _flat(output) and not (folder.path / "tracks").exists(), output
    assert "pass --sam2 with the path" in _flat(output) and "checkpoint=" not in output, output


def test_export_onnx_vit_b_without_its_weights(folder: Folder) -> None:
    code, output = folder.run(_line("grounded-sam export-onnx --sam sam_vit_b"))
    message = _flat(output)
    assert code == 2 and f"put 'sam_vit_b_01ec64.pth' in {folder.home}" in message, output
    assert "pass --sam with the path" in message and "checkpoint=" not in message, output


@pytest.mark.slow
def test_eval(folder: Folder) -> None:
    """100 held-out scenes: precision and recall as the README's table states them, roughly."""
    code, output = folder.run(_line("grounded-sam eval"))
    assert code == 0, output
    precision = float(re.search(r"text-prompt precision.*?([01]\.\d{3})", output).group(1))
    assert precision > 0.85, output


def test_label_with_an_ontology(folder: Folder) -> None:
    """Three prompts of one class label three rings "ring"; the negatives ("orange star") are not
    labelled."""
    code, output = folder.run(_line("grounded-sam label images/ --ontology onto.yaml"))
    assert code == 0, output
    coco = json.loads((folder.path / "onto-dataset" / "annotations" / "instances_train.json").read_text())
    names = {c["id"]: c["name"] for c in coco["categories"]}
    per_image: dict[int, list[str]] = {}
    for a in coco["annotations"]:
        per_image.setdefault(a["image_id"], []).append(names[a["category_id"]])
    files = {image["id"]: Path(image["file_name"]).stem for image in coco["images"]}
    found = {files[i]: sorted(labels) for i, labels in per_image.items()}
    assert found == {"scene_5": ["cross", "ring", "ring"], "scene_6": ["ring"]}, found


# --- Serve and the app ---------------------------------------------------------------------------------


def _started(folder: Folder, argv: list[str], log_name: str) -> subprocess.Popen:
    with (folder.path / log_name).open("wb") as log:
        return subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def _stop(process: subprocess.Popen) -> None:
    """SIGINT to the command's own process group (the app's Streamlit child too), as Ctrl-C would."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGINT)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


@pytest.fixture(scope="module")
def server(folder: Folder) -> Iterator[str]:
    """The Serve section's ``grounded-sam serve --port 8000`` on a free port: the same command as the
    command list's ``grounded-sam serve`` with ``--port`` given."""
    from tests.serve.server import free_port, wait_healthy

    port = str(free_port())
    line = _line("grounded-sam serve --port").rstrip("&").strip()
    argv = shlex.split(line.replace(SERVER_PORT, port))
    assert argv == [*shlex.split(_line("grounded-sam serve")), "--port", port]
    process = _started(folder, [*_cli(), *argv[1:]], "serve.log")
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, process, folder.path / "serve.log")
        yield url
    finally:
        _stop(process)


def test_the_serve_lines(folder: Folder, server: str) -> None:
    """The python line writes scene.png, curl posts it and gets both phrases back as COCO RLE masks."""
    bash = shutil.which("bash") or "/bin/bash"
    write = _line("python -c")
    subprocess.run([bash, "-c", write.replace("python ", f"{shlex.quote(sys.executable)} ", 1)], check=True)
    assert Image.open("scene.png").size == SCENE.image.shape[1::-1]
    curl = _line("curl ").replace(f":{SERVER_PORT}", f":{server.rsplit(':', 1)[1]}")
    if shutil.which("curl"):
        answer = json.loads(subprocess.run(shlex.split(curl), capture_output=True, check=True).stdout)
    else:  # the same request with httpx
        import httpx

        with open("scene.png", "rb") as image:
            answer = httpx.post(
                f"{server}/v1/segment",
                files={"image": image},
                data={"prompt": "red square. green circle"},
                timeout=120,
            ).json()
    assert sorted(d["label"] for d in answer["detections"]) == ["green circle", "red square"], answer
    assert answer["image_id"] == hashlib.sha256(Path("scene.png").read_bytes()).hexdigest()
    assert (answer["height"], answer["width"]) == SCENE.image.shape[:2]
    assert all(d["mask"]["size"] == list(SCENE.image.shape[:2]) for d in answer["detections"])


def test_the_httpx_snippet(folder: Folder, server: str) -> None:
    snippet = _snippet("httpx.Client(").replace(f":{SERVER_PORT}", f":{server.rsplit(':', 1)[1]}")
    namespace: dict[str, object] = {}
    exec(compile(snippet, "README.md", "exec"), namespace)
    masks = namespace["masks"]
    assert len(masks) == 1 and masks[0].shape == SCENE.image.shape[:2] and masks[0].any()
    assert namespace["refined"]["cache_hit"] is True


def _app_answers(folder: Folder, line: str, log_name: str) -> None:
    """``line`` on a free loopback port answers Streamlit's health check, then stops on Ctrl-C."""
    from tests.serve.server import free_port, wait_healthy

    port = str(free_port())
    argv = [*shlex.split(line), "--port", port, "--host", "127.0.0.1"]
    process = _started(folder, [*_cli(), *argv[1:]], log_name)
    try:
        wait_healthy(f"http://127.0.0.1:{port}/_stcore", process, folder.path / log_name, name=line)
    finally:
        _stop(process)
    assert process.returncode == 0, (folder.path / log_name).read_text()


def test_the_app_starts(folder: Folder) -> None:
    _app_answers(folder, _line("grounded-sam app"), "app.log")


def test_the_review_page_starts(folder: Folder) -> None:
    """The review line without ``--export`` (its comment: the Review page) on the labelled dataset."""
    folder.run(_line("grounded-sam label images/ --classes"))
    line = _line("grounded-sam review dataset --export").split(" --export")[0]
    assert line == "grounded-sam review dataset"
    _app_answers(folder, line, "review.log")


# --- Deploy (ONNX) -------------------------------------------------------------------------------------


def test_export_onnx_demo_then_predict_with_it(folder: Folder) -> None:
    code, output = folder.run(_line("grounded-sam export-onnx --sam demo_sam"))
    assert code == 0, output
    config = json.loads((folder.path / "exported" / "demo" / "config.json").read_text())
    assert {"encoder", "decoder", "encoder_int8", "decoder_int8"} <= set(config["files"])
    code, output = folder.run(_line("grounded-sam predict photo.jpg"))
    assert code == 0 and "red square" in output, output
    assert (folder.path / "out" / "photo_overlay.png").is_file()


def test_the_onnx_snippets(folder: Folder) -> None:
    """The ``OnnxSamPredictor`` snippet (``detector`` given: the snippet leaves it to the reader), then the
    plain ONNX Runtime one on its files (``padded_image``, the box's corners and sizes given likewise)."""
    from tests.pipelines import ScriptedDetector

    namespace: dict[str, object] = {"detector": ScriptedDetector(SCENE.boxes, SCENE.labels)}
    exec(compile(_snippet("export_onnx("), "README.md", "exec"), namespace)
    masks = namespace["masks"]
    assert masks.shape == (1, *SCENE.image.shape[:2]) and masks.any()
    found = namespace["pipeline"].predict("photo.jpg", "red square")
    assert found.labels == ["red square"]

    config = json.loads(Path("exported/demo/config.json").read_text())
    pixels = np.asarray(Image.open("photo.jpg").convert("RGB"), np.float32)
    assert pixels.shape[:2] == (config["image_size"],) * 2  # the photo needs no resizing nor padding
    normalised = (pixels - config["pixel_mean"]) / config["pixel_std"]
    box = SCENE.boxes[SCENE.labels.index("red square")]
    given = {
        "padded_image": normalised.transpose(2, 0, 1)[None].astype(np.float32),
        "coords": box.reshape(1, 2, 2).astype(np.float32),
        "labels": np.array([[2, 3]], np.float32),
        "E": config["embedding_size"],
        "H": pixels.shape[0],
        "W": pixels.shape[1],
    }
    exec(compile(_snippet("ort.InferenceSession("), "README.md", "exec"), given)
    best = given["masks"][0, int(np.argmax(given["scores"][0]))] > 0
    square = SCENE.masks[SCENE.labels.index("red square")]
    assert (best & square).sum() / (best | square).sum() > 0.8
