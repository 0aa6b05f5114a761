"""Shared builders for the video tests: a tiny random SAM 2 video model and moving-shape videos."""

from __future__ import annotations

import pytest

from tests.video.synthetic import MovingShape, random_moving_shapes, tiny_sam2_video

SIZE = (128, 128)


@pytest.fixture(scope="module")
def tiny_model():
    """(model, processor): random weights at 128 px with a short memory (window of 3 frames)."""
    return tiny_sam2_video(128, num_maskmem=3, max_object_pointers_in_encoder=4)


@pytest.fixture
def shapes() -> tuple[MovingShape, ...]:
    """Three shapes from frame 0, and a purple square entering on frame 6 and leaving on frame 14."""
    late = MovingShape(
        "square", "purple", center=(40.0, 40.0), velocity=(2.0, 1.0), radius=16.0, enter=6, leave=14
    )
    return (*random_moving_shapes(3, SIZE, seed=1), late)
