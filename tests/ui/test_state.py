"""Session state: switching images, visibility, the instance table and click scaling."""

from __future__ import annotations

import numpy as np
import pytest

from grounded_sam.ui.state import AppState, click_to_pixels, instance_table
from tests.pipelines import SCENE
from tests.ui.results import scene_result


def test_a_new_image_forgets_results_and_the_same_image_keeps_them() -> None:
    state = AppState()
    assert state.use_image(SCENE.image, "scene.png")
    state.set_result(scene_result())
    assert state.generation == 1 and state.shown.all()
    assert not state.use_image(SCENE.image.copy(), "again.png")
    assert state.result is not None and state.image_name == "scene.png"
    assert state.use_image(np.ascontiguousarray(SCENE.image[::-1]), "flipped.png")
    assert state.result is None and state.visible() is None and state.edits == {}


def test_hidden_instances_leave_the_visible_result() -> None:
    state = AppState()
    state.use_image(SCENE.image, "scene.png")
    state.set_result(scene_result())
    state.set_shown(0, False)
    visible = state.visible()
    assert visible.labels == SCENE.labels[1:]
    rows = instance_table(state.result, state.shown)
    assert [row["shown"] for row in rows] == [False] + [True] * (len(SCENE.labels) - 1)
    assert rows[1]["label"] == SCENE.labels[1] and rows[1]["area (px)"] == int(SCENE.masks[1].sum())
    assert rows[0]["score"] == pytest.approx(0.9)


def test_edit_of_starts_from_the_instance_box() -> None:
    state = AppState()
    with pytest.raises(IndexError, match="run a text prompt"):
        state.edit_of(0)
    state.use_image(SCENE.image, "scene.png")
    state.set_result(scene_result())
    np.testing.assert_array_equal(state.edit_of(2).box, SCENE.boxes[2])
    assert state.edit_of(2).points == ()


@pytest.mark.parametrize(
    ("click", "expected"),
    [
        ({"x": 80, "y": 60, "width": 160, "height": 120}, (80.0, 60.0)),
        ({"x": 40, "y": 30, "width": 80, "height": 60}, (80.0, 60.0)),  # shown at half size
        ({"x": 500, "y": -3, "width": 160, "height": 120}, (159.0, 0.0)),  # clipped
        ({"x": 12, "y": 7}, (12.0, 7.0)),
    ],
)
def test_click_to_pixels(click: dict, expected: tuple[float, float]) -> None:
    assert click_to_pixels(click, (120, 160)) == pytest.approx(expected)


def test_a_click_names_the_smallest_shown_instance_under_it() -> None:
    state = AppState()
    state.use_image(SCENE.image, "scene.png")
    state.set_result(scene_result())
    for i in range(len(SCENE.labels)):
        owner = scene_result().instance_map()  # the smaller mask is drawn on top where masks overlap
        ys, xs = np.nonzero(owner == i)
        if len(ys):
            assert state.clicked_instance(float(xs[0]) + 0.5, float(ys[0]) + 0.5) == i
    ys, xs = np.nonzero(~SCENE.masks.any(axis=0))
    assert state.clicked_instance(float(xs[0]), float(ys[0])) is None  # background
    ys, xs = np.nonzero(scene_result().instance_map() == 1)
    state.set_shown(1, False)
    assert state.clicked_instance(float(xs[0]), float(ys[0])) != 1  # a hidden instance is not clicked


def test_forgetting_the_image_clears_every_result() -> None:
    state = AppState()
    state.use_image(SCENE.image, "scene.png")
    state.set_result(scene_result())
    state.forget_image()
    assert state.image is None and state.result is None and state.visible() is None
    assert state.everything is None and state.inpainted is None and state.edits == {}
    assert state.use_image(SCENE.image, "scene.png")  # the same image again is a new image
