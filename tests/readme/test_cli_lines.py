"""The README's ``grounded-sam`` lines run through the CLI in this process, each checked by what it writes."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.readme.text import SCENE, flat, readme_line
from tests.readme.workspace import Folder


def test_predict_photos(folder: Folder) -> None:
    """Outputs mirror the input tree; the COCO files hold the phrases found; the manifest lists both."""
    code, output = folder.run(readme_line("grounded-sam predict photos/"))
    assert code == 0, output
    coco = json.loads((folder.path / "out" / "scene_2.coco.json").read_text())
    names = {c["id"]: c["name"] for c in coco["categories"]}
    assert sorted(names[a["category_id"]] for a in coco["annotations"]) == ["green circle", "red square"]
    assert (folder.path / "out" / "a" / "scene_3.coco.json").is_file()
    manifest = (folder.path / "out" / "manifest.json").read_text()
    assert "photos/scene_2.jpg" in manifest and "photos/a/scene_3.jpg" in manifest


def test_everything_photo(folder: Folder) -> None:
    folder.run(readme_line("grounded-sam predict photos/"))  # README order: both write out/
    code, output = folder.run(readme_line("grounded-sam everything photo.jpg"))
    assert code == 0, output
    overlay = np.asarray(Image.open(folder.path / "out" / "photo_overlay.png").convert("RGB"))
    assert overlay.shape == SCENE.image.shape and "red square" in output and "green circle" in output


def _yolo_labels(dataset: Path) -> dict[str, list[int]]:
    return {
        path.stem: [int(line.split()[0]) for line in path.read_text().splitlines()]
        for path in sorted((dataset / "labels" / "train").glob("*.txt"))
    }


def test_label_images_as_yolo(folder: Folder) -> None:
    code, output = folder.run(readme_line("grounded-sam label images/ --classes"))
    assert code == 0, output
    data = (folder.path / "dataset" / "data.yaml").read_text()
    assert '0: "blue ring"' in data and '1: "green cross"' in data and '2: "orange star"' in data
    labels = _yolo_labels(folder.path / "dataset")
    assert {name: sorted(ids) for name, ids in labels.items()} == {"scene_5": [0, 1], "scene_6": [2]}


def test_review_export(folder: Folder) -> None:
    """Nothing reviewed yet: the export holds the images and no labels (approved and edited ones only)."""
    folder.run(readme_line("grounded-sam label images/ --classes"))
    code, output = folder.run(readme_line("grounded-sam review dataset --export reviewed"))
    assert code == 0, output
    assert sorted(p.name for p in (folder.path / "reviewed" / "images" / "train").iterdir()) == [
        "scene_5.jpg",
        "scene_6.jpg",
    ]
    assert _yolo_labels(folder.path / "reviewed") == {"scene_5": [], "scene_6": []}


def test_inpaint_photo(folder: Folder) -> None:
    """The red square is painted over; the pixels far from it are the photo's."""
    code, output = folder.run(readme_line("grounded-sam inpaint photo.jpg"))
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
    code, output = folder.run(readme_line("grounded-sam track clip.mp4"))
    expected = f"'facebook/sam2.1-hiera-tiny' in the folder {folder.home}/sam2.1-hiera-tiny"
    assert code == 2 and expected in flat(output) and not (folder.path / "tracks").exists(), output
    assert "pass --sam2 with the path" in flat(output) and "checkpoint=" not in output, output


def test_export_onnx_vit_b_without_its_weights(folder: Folder) -> None:
    code, output = folder.run(readme_line("grounded-sam export-onnx --sam sam_vit_b"))
    message = flat(output)
    assert code == 2 and f"put 'sam_vit_b_01ec64.pth' in {folder.home}" in message, output
    assert "pass --sam with the path" in message and "checkpoint=" not in message, output


@pytest.mark.slow
def test_eval(folder: Folder) -> None:
    """100 held-out scenes: precision and recall as the README's table states them, roughly."""
    code, output = folder.run(readme_line("grounded-sam eval"))
    assert code == 0, output
    precision = float(re.search(r"text-prompt precision.*?([01]\.\d{3})", output).group(1))
    assert precision > 0.85, output


def test_label_with_an_ontology(folder: Folder) -> None:
    """Three prompts of one class label three rings "ring"; the negatives ("orange star") are not
    labelled."""
    code, output = folder.run(readme_line("grounded-sam label images/ --ontology onto.yaml"))
    assert code == 0, output
    coco = json.loads((folder.path / "onto-dataset" / "annotations" / "instances_train.json").read_text())
    names = {c["id"]: c["name"] for c in coco["categories"]}
    per_image: dict[int, list[str]] = {}
    for a in coco["annotations"]:
        per_image.setdefault(a["image_id"], []).append(names[a["category_id"]])
    files = {image["id"]: Path(image["file_name"]).stem for image in coco["images"]}
    found = {files[i]: sorted(labels) for i, labels in per_image.items()}
    assert found == {"scene_5": ["cross", "ring", "ring"], "scene_6": ["ring"]}, found
