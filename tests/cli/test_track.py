"""grounded-sam track, end to end: a saved tiny random SAM 2 video model loaded by the real builder."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from grounded_sam import api
from grounded_sam.cli import app
from grounded_sam.text.base import Detections
from grounded_sam.video import write_video
from tests.video.synthetic import (
    ColorDetector,
    random_moving_shapes,
    render_moving_shapes,
    tiny_sam2_video,
)

runner = CliRunner()
SIZE = (128, 128)
SHAPES = random_moving_shapes(2, SIZE, seed=4)
PROMPT = ". ".join(s.label for s in SHAPES)


@pytest.fixture(scope="module")
def sam2_folder(tmp_path_factory):
    """A folder as ``save_pretrained`` writes it, which ``--sam2 PATH`` loads through build_sam2_video."""
    folder = tmp_path_factory.mktemp("sam2") / "tiny"
    model, processor = tiny_sam2_video(128)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


@pytest.fixture
def clip(tmp_path):
    return write_video((f.image for f in render_moving_shapes(SHAPES, 9, SIZE)), tmp_path / "clip.mp4", fps=8)


class FirstFrameBoxes(ColorDetector):
    """The shapes' boxes on frame 0, whatever the image (colours do not survive a lossy codec exactly)."""

    def detect(self, image, phrases, **thresholds) -> Detections:
        return super().detect(next(render_moving_shapes(SHAPES, 1, SIZE)).image, phrases, **thresholds)


@pytest.fixture
def color_detector(monkeypatch):
    """The default pipeline's detector, replaced by a scripted one; records how the pipeline was asked for."""
    calls = []

    def pipeline(*args):
        calls.append(args)
        return SimpleNamespace(detector=FirstFrameBoxes(SHAPES))

    monkeypatch.setattr(api, "default_pipeline", pipeline)
    return calls


def test_track_writes_every_output(sam2_folder, clip, color_detector, tmp_path) -> None:
    out = tmp_path / "out"
    args = [
        "track",
        str(clip),
        "-p",
        PROMPT,
        "-o",
        str(out),
        "--sam2",
        str(sam2_folder),
        "--detect-every",
        "4",
    ]
    result = runner.invoke(app, [*args, "--max-frames", "7"])
    assert result.exit_code == 0, result.output
    assert color_detector == [(None, None, None)]  # the default pipeline's detector, as `predict` builds it
    assert sorted(p.name for p in out.iterdir()) == ["clip.json", "clip.mp4", "clip.txt", "masks"]
    assert len(list((out / "masks").glob("*.png"))) == 7
    data = json.loads((out / "clip.json").read_text())
    assert data["videos"][0]["length"] == 7 and data["videos"][0]["fps"] == 8.0
    assert [c["name"] for c in data["categories"]] == [s.label for s in SHAPES]
    rows = (out / "clip.txt").read_text().splitlines()
    assert len(rows) == len(data["annotations"]) > 0
    assert {int(r.split(",")[0]) for r in rows} <= set(range(1, 8))
    ids = {a["track_id"] for a in data["annotations"]}
    first = np.asarray(Image.open(out / "masks" / "000006.png"))
    assert set(np.unique(first).tolist()) <= ids | {0}
    assert "frames/s" in result.output and "tracks over 7 frames" in _said(result)


def test_frame_folder_and_chosen_formats(sam2_folder, color_detector, tmp_path) -> None:
    frames = tmp_path / "frames"
    frames.mkdir()
    for i, frame in enumerate(render_moving_shapes(SHAPES, 3, SIZE)):
        Image.fromarray(frame.image).save(frames / f"f{i}.png")
    out = tmp_path / "out"
    args = [
        "track",
        str(frames),
        "-p",
        PROMPT,
        "-o",
        str(out),
        "--sam2",
        str(sam2_folder),
        "-f",
        "coco",
        "--fps",
        "5",
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    data = json.loads((out / "frames.json").read_text())
    assert [im["file_name"] for im in data["images"]] == ["f0.png", "f1.png", "f2.png"]
    assert data["videos"][0]["fps"] == 5.0
    assert sorted(p.name for p in out.iterdir()) == ["frames.json"]


def _said(result) -> str:
    return " ".join(result.output.split())  # rich wraps long lines


def test_bad_input_exits_with_a_message(sam2_folder, color_detector, tmp_path) -> None:
    result = runner.invoke(
        app, ["track", str(tmp_path / "none.mp4"), "-p", "car", "--sam2", str(sam2_folder)]
    )
    assert result.exit_code == 2 and "does not exist" in _said(result)
    (tmp_path / "empty").mkdir()
    result = runner.invoke(app, ["track", str(tmp_path / "empty"), "-p", "car"])
    assert result.exit_code == 2 and "no frame images" in _said(result)
    result = runner.invoke(app, ["track", str(tmp_path), "-p", "car", "-f", "gif"])
    assert result.exit_code != 0 and "gif" in _said(result)
    result = runner.invoke(
        app, ["track", str(tmp_path / "empty"), "-p", "car", "--sam2", str(tmp_path / "empty")]
    )
    assert result.exit_code == 2


def test_the_default_detector_is_the_demo_pipeline(sam2_folder, clip, tmp_path, monkeypatch) -> None:
    from grounded_sam.demo import EverythingTextDetector

    built = []
    real = api.default_pipeline
    monkeypatch.setattr(api, "default_pipeline", lambda *args: built.append(real(*args)) or built[-1])
    out = tmp_path / "out"
    args = ["track", str(clip), "-p", SHAPES[0].label, "-o", str(out), "--sam2", str(sam2_folder)]
    result = runner.invoke(app, [*args, "--max-frames", "2", "-f", "mot"])
    assert result.exit_code == 0, result.output
    assert len(built) == 1 and isinstance(built[0].detector, EverythingTextDetector)
    assert (out / "clip.txt").exists()


def test_without_a_sam2_download_it_says_so_plainly(clip, color_detector, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("GROUNDED_SAM_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    result = runner.invoke(app, ["track", str(clip), "-p", "car", "-o", str(tmp_path / "out")])
    said = _said(result)
    assert (
        result.exit_code == 2 and "not embedded" in said and "hf download facebook/sam2.1-hiera-tiny" in said
    )
    assert "checkpoint=" not in said and "--sam2" in said and not (tmp_path / "out").exists()
