"""Moving-shape videos: ground truth matches the pixels, shapes bounce inside, enter and leave on time."""

from __future__ import annotations

import numpy as np
import pytest

from grounded_sam.data import COLORS
from tests.video.synthetic import (
    ColorDetector,
    MovingShape,
    random_moving_shapes,
    render_moving_shapes,
    tiny_sam2_video,
)

SIZE = (64, 80)


def test_ground_truth_is_the_painted_pixels() -> None:
    shapes = random_moving_shapes(3, SIZE, seed=2, max_speed=3.0)
    frames = list(render_moving_shapes(shapes, 30, SIZE))
    for frame in frames:
        assert frame.image.shape == (*SIZE, 3) and frame.masks.shape[1:] == SIZE
        assert not (frame.masks.sum(axis=0) > 1).any()  # disjoint
        for mask, obj in zip(frame.masks, frame.object_ids, strict=True):
            painted = (frame.image == COLORS[shapes[obj].color]).all(axis=-1)
            assert np.array_equal(mask, painted)
    centres = [frame.boxes[0, :2] + (frame.boxes[0, 2:] - frame.boxes[0, :2]) / 2 for frame in frames]
    assert np.linalg.norm(centres[-1] - centres[0]) > 5  # it moves
    assert all(len(frame.object_ids) >= 1 for frame in frames)


def test_bounce_enter_and_leave() -> None:
    fast = MovingShape("circle", "red", center=(40.0, 32.0), velocity=(7.0, 0.0), radius=10.0)
    late = MovingShape(
        "square", "blue", center=(20.0, 20.0), velocity=(0.0, 0.0), radius=8.0, enter=3, leave=5
    )
    for t in range(40):
        x = fast.placement(t, SIZE).cx
        assert 10.0 <= x <= 70.0
    frames = list(render_moving_shapes([fast, late], 7, SIZE))
    assert [1 in f.object_ids for f in frames] == [False, False, False, True, True, False, False]
    found = ColorDetector([fast, late]).detect(frames[3].image, ["blue square", "green star", "red circle"])
    assert found.labels == ["blue square", "red circle"]
    np.testing.assert_array_equal(found.boxes, frames[3].boxes[[1, 0]])
    with pytest.raises(ValueError, match="unknown shape"):
        MovingShape("blob", "red", (0, 0), (0, 0), 3.0)


def test_tiny_model_rejects_odd_sizes() -> None:
    with pytest.raises(ValueError, match="multiple of 32"):
        tiny_sam2_video(80)
