from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from grounded_sam.export.png import index_png_bytes, label_index_map, mask_png_bytes, save_png_masks
from grounded_sam.result import Result

H, W = 20, 30


def decode(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def nested() -> Result:
    """A big "road" with a small "car" on it and a separate "tree"."""
    masks = np.zeros((3, H, W), dtype=bool)
    masks[0, 5:20, :] = True
    masks[1, 8:12, 10:16] = True
    masks[2, 0:4, 25:30] = True
    boxes = np.array([[0, 5, 30, 20], [10, 8, 16, 12], [25, 0, 30, 4]], dtype=np.float32)
    return Result(masks, boxes, ["road", "car", "tree"], [0.9, 0.8, 0.7], [0.9, 0.9, 0.9], (H, W))


def test_mask_png_is_black_and_white() -> None:
    mask = nested().masks[1]
    image = decode(mask_png_bytes(mask))
    assert image.mode == "L" and image.size == (W, H)
    arr = np.asarray(image)
    assert set(np.unique(arr)) == {0, 255}
    np.testing.assert_array_equal(arr == 255, mask)


def test_index_png_depth() -> None:
    small = np.arange(H * W, dtype=np.int64).reshape(H, W) % 256
    image = decode(index_png_bytes(small))
    assert image.mode == "L"
    np.testing.assert_array_equal(np.asarray(image), small)
    large = small.copy()
    large[0, 0] = 300
    image = decode(index_png_bytes(large))
    assert image.mode in ("I;16", "I")
    np.testing.assert_array_equal(np.asarray(image), large)
    with pytest.raises(ValueError, match=r"\[0, 65535\]"):
        index_png_bytes(np.full((2, 2), -1))
    with pytest.raises(ValueError, match="integer array"):
        index_png_bytes(np.zeros((2, 2), np.float32))


def test_label_index_map() -> None:
    result = nested()
    labels = label_index_map(result)  # car 1, road 2, tree 3 (sorted)
    assert labels.shape == (H, W)
    assert labels[0, 0] == 0
    assert labels[10, 12] == 1  # the car is drawn over the road
    assert labels[15, 2] == 2
    assert labels[2, 27] == 3
    custom = label_index_map(result, {"road": 5, "car": 9, "tree": 5})
    assert set(np.unique(custom)) == {0, 5, 9}
    with pytest.raises(ValueError, match=">= 1"):
        label_index_map(result, {"road": 0, "car": 1, "tree": 2})
    assert (label_index_map(Result.empty((H, W))) == 0).all()


def test_save_png_masks(tmp_path: Path) -> None:
    result = nested()
    paths = save_png_masks(result, tmp_path / "out", stem="img")
    names = [p.name for p in paths]
    assert names == [
        "img_labels.png",
        "img_labels.txt",
        "img_mask_000_road.png",
        "img_mask_001_car.png",
        "img_mask_002_tree.png",
    ]
    assert paths[1].read_text() == "0 background\n1 car\n2 road\n3 tree\n"
    np.testing.assert_array_equal(np.asarray(Image.open(paths[0])), label_index_map(result))
    for path, mask in zip(paths[2:], result.masks, strict=True):
        np.testing.assert_array_equal(np.asarray(Image.open(path)) > 0, mask)
    odd = Result(result.masks[:1], result.boxes[:1], ["traffic light/red"], [1], [1], (H, W))
    assert save_png_masks(odd, tmp_path)[-1].name == "result_mask_000_traffic_light_red.png"


def test_save_png_masks_empty(tmp_path: Path) -> None:
    paths = save_png_masks(Result.empty((H, W)), tmp_path)
    assert [p.name for p in paths] == ["result_labels.png", "result_labels.txt"]
    assert (np.asarray(Image.open(paths[0])) == 0).all()
    assert paths[1].read_text() == "0 background\n"
