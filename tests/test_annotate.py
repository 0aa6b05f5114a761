from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from grounded_sam.annotate import label_color, overlay
from grounded_sam.result import Result

H, W = 60, 80
GRAY = 100


def two_squares() -> Result:
    masks = np.zeros((2, H, W), dtype=bool)
    masks[0, 10:40, 10:40] = True
    masks[1, 20:30, 50:70] = True
    return Result(
        masks=masks,
        boxes=np.array([[10, 10, 40, 40], [50, 20, 70, 30]], dtype=np.float32),
        labels=["cat", "dog"],
        scores=np.array([0.91, 0.42]),
        mask_scores=np.array([0.9, 0.8]),
        image_size=(H, W),
    )


def gray_image() -> np.ndarray:
    return np.full((H, W, 3), GRAY, dtype=np.uint8)


def test_label_color_is_stable_and_distinct() -> None:
    # The same colour in another process with another hash seed (str hashes are salted per process).
    code = "from grounded_sam.annotate import label_color; print(*label_color('cat'))"
    other = subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, "PYTHONHASHSEED": "12345"},
        capture_output=True,
        text=True,
    )
    assert tuple(int(v) for v in other.stdout.split()) == label_color("cat"), other.stderr
    assert label_color("cat") != label_color("dog")
    for label in ["cat", "dog", "", "a very long label with spaces"]:
        color = label_color(label)
        assert len(color) == 3 and all(0 <= c <= 255 for c in color)
        assert max(color) - min(color) > 60  # saturated, visible on gray


def test_masks_are_blended_with_label_colour() -> None:
    result = two_squares()
    out = overlay(gray_image(), result, alpha=0.5, show_boxes=False, show_labels=False)
    assert isinstance(out, Image.Image) and out.mode == "RGB" and out.size == (W, H)
    arr = np.asarray(out).astype(int)
    expected = np.round(GRAY * 0.5 + np.array(label_color("cat")) * 0.5)
    np.testing.assert_array_equal(arr[25, 25], expected)  # interior of the cat square
    np.testing.assert_array_equal(arr[10, 25], label_color("cat"))  # opaque outline
    assert (arr[~result.masks.any(axis=0)] == GRAY).all()  # everything else untouched
    changed = (arr != GRAY).any(axis=2)
    np.testing.assert_array_equal(changed, result.masks.any(axis=0))


def test_custom_colors_and_alpha() -> None:
    out = overlay(
        gray_image(),
        two_squares(),
        alpha=1.0,
        colors={"dog": (0, 0, 255)},
        show_boxes=False,
        show_labels=False,
    )
    arr = np.asarray(out)
    np.testing.assert_array_equal(arr[25, 60], (0, 0, 255))
    np.testing.assert_array_equal(arr[25, 25], label_color("cat"))  # labels not in `colors` keep theirs


def test_smaller_mask_is_drawn_on_top() -> None:
    base = two_squares()
    inner = np.zeros((1, H, W), dtype=bool)
    inner[0, 20:30, 20:30] = True
    nested = Result.concat([Result(inner, [[20, 20, 30, 30]], ["bird"], [0.5], [0.5], (H, W)), base])
    arr = np.asarray(overlay(gray_image(), nested, alpha=1.0, show_boxes=False, show_labels=False))
    np.testing.assert_array_equal(arr[25, 25], label_color("bird"))
    np.testing.assert_array_equal(arr[35, 35], label_color("cat"))


def test_boxes_and_captions_are_drawn() -> None:
    result = two_squares()
    plain = np.asarray(overlay(gray_image(), result, alpha=0.0, show_boxes=False, show_labels=False))
    boxed = np.asarray(overlay(gray_image(), result, alpha=0.0, show_boxes=True, show_labels=False))
    np.testing.assert_array_equal(boxed[20, 50], label_color("dog"))  # box corner (outside the mask fill)
    assert (plain[45:, :] == GRAY).all() and (boxed[45:, :] == GRAY).all()  # nothing below the boxes
    captioned = np.asarray(overlay(gray_image(), result, alpha=0.0, show_boxes=True, show_labels=True))
    caption_area = (captioned != boxed).any(axis=2)
    assert caption_area[:10, 10:40].sum() > 20  # "cat 0.91" above the cat box
    assert caption_area[:20, 50:].sum() > 20  # "dog 0.42" above the dog box


def test_empty_result_returns_the_image(tmp_path: Path) -> None:
    Image.fromarray(gray_image()).save(tmp_path / "g.png")
    out = overlay(tmp_path / "g.png", Result.empty((H, W)))
    np.testing.assert_array_equal(np.asarray(out), gray_image())


def test_errors() -> None:
    with pytest.raises(ValueError, match="result was made for"):
        overlay(np.zeros((H + 1, W, 3), np.uint8), two_squares())
    with pytest.raises(ValueError, match="alpha"):
        overlay(gray_image(), two_squares(), alpha=1.5)
