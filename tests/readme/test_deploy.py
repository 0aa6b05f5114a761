"""The Deploy section: the demo model exported to ONNX, predict with it, and the two ONNX snippets."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from tests.readme.text import SCENE, python_block, readme_line
from tests.readme.workspace import Folder


def test_export_onnx_demo_then_predict_with_it(folder: Folder) -> None:
    code, output = folder.run(readme_line("grounded-sam export-onnx --sam demo_sam"))
    assert code == 0, output
    config = json.loads((folder.path / "exported" / "demo" / "config.json").read_text())
    assert {"encoder", "decoder", "encoder_int8", "decoder_int8"} <= set(config["files"])
    code, output = folder.run(readme_line("grounded-sam predict photo.jpg"))
    assert code == 0 and "red square" in output, output
    assert (folder.path / "out" / "photo_overlay.png").is_file()


def test_the_onnx_snippets(folder: Folder) -> None:
    """The ``OnnxSamPredictor`` snippet (``detector`` given: the snippet leaves it to the reader), then the
    plain ONNX Runtime one on its files (``padded_image``, the box's corners and sizes given likewise)."""
    from tests.pipelines import ScriptedDetector

    namespace: dict[str, object] = {"detector": ScriptedDetector(SCENE.boxes, SCENE.labels)}
    exec(compile(python_block("export_onnx("), "README.md", "exec"), namespace)
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
    exec(compile(python_block("ort.InferenceSession("), "README.md", "exec"), given)
    best = given["masks"][0, int(np.argmax(given["scores"][0]))] > 0
    square = SCENE.masks[SCENE.labels.index("red square")]
    assert (best & square).sum() / (best | square).sum() > 0.8
