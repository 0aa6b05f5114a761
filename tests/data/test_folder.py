"""Scene folders: files written atomically, JSON ground truth round-trips through pycocotools."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils

from grounded_sam.data.folder import load_scene, write_scene, write_scene_folder
from grounded_sam.data.pil_scenes import make_pil_scene
from grounded_sam.data.scenes import SceneConfig, make_scene, scene_seed

CONFIG = SceneConfig(size=(64, 80))


def test_write_scene_folder_files_and_round_trip(tmp_path: Path) -> None:
    paths = write_scene_folder(tmp_path / "out", n=3, seed=5, config=CONFIG, per_folder=2)
    assert [p.relative_to(tmp_path / "out").as_posix() for p in paths] == [
        "0000/scene_000000.png",
        "0000/scene_000001.png",
        "0001/scene_000002.png",
    ]
    # Only the finished pairs remain: no temporary files from the atomic writes.
    written = sorted(p.relative_to(tmp_path / "out").as_posix() for p in (tmp_path / "out").rglob("*.*"))
    assert written == sorted(
        [p.relative_to(tmp_path / "out").as_posix() for p in paths]
        + [p.relative_to(tmp_path / "out").with_suffix(".json").as_posix() for p in paths]
    )
    for i, path in enumerate(paths):
        expected = make_scene(scene_seed(5, i), CONFIG)
        record = json.loads(path.with_suffix(".json").read_text())
        assert record["image"] == path.name and (record["height"], record["width"]) == (64, 80)
        assert record["seed"] == scene_seed(5, i) and record["box_format"] == "xyxy_exclusive"
        anns = record["annotations"]
        assert [a["label"] for a in anns] == expected.labels
        assert [a["shape"] for a in anns] == expected.shapes and [a["color"] for a in anns] == expected.colors
        np.testing.assert_array_equal(np.array([a["box"] for a in anns]).reshape(-1, 4), expected.boxes)
        assert [a["area"] for a in anns] == [int(m.sum()) for m in expected.masks]
        # Decode with pycocotools directly, as any COCO reader would.
        for ann, mask in zip(anns, expected.masks, strict=True):
            assert isinstance(ann["segmentation"]["counts"], str)
            rle = {"size": ann["segmentation"]["size"], "counts": ann["segmentation"]["counts"].encode()}
            np.testing.assert_array_equal(mask_utils.decode(rle).astype(bool), mask)
        np.testing.assert_array_equal(np.asarray(Image.open(path)), expected.image)
        loaded = load_scene(path.with_suffix(".json"))
        np.testing.assert_array_equal(loaded.masks, expected.masks)
        np.testing.assert_array_equal(loaded.image, expected.image)
        assert loaded.labels == expected.labels and loaded.seed == expected.seed


def test_write_scene_replaces_existing_files(tmp_path: Path) -> None:
    path = tmp_path / "a.png"
    path.write_bytes(b"old")
    write_scene(make_pil_scene(1, (64, 64)), path)
    assert load_scene(tmp_path / "a.json").image.shape == (64, 64, 3)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json", "a.png"]


def test_errors_name_the_problem(tmp_path: Path) -> None:
    scene = make_scene(0, CONFIG)
    with pytest.raises(ValueError, match="PNG"):
        write_scene(scene, tmp_path / "a.jpg")
    with pytest.raises(ValueError, match="per_folder"):
        write_scene_folder(tmp_path, 1, 0, CONFIG, per_folder=0)
    with pytest.raises(FileNotFoundError):
        load_scene(tmp_path / "missing.json")
    write_scene(scene, tmp_path / "b.png")
    (tmp_path / "b.png").unlink()
    with pytest.raises(FileNotFoundError, match=r"b\.png"):
        load_scene(tmp_path / "b.json")
