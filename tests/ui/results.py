"""A Result made from the ground truth of tests.pipelines.SCENE, shared by the ui tests."""

from __future__ import annotations

import numpy as np

from grounded_sam.result import Result
from tests.pipelines import SCENE


def scene_result() -> Result:
    """SCENE's instances with detector scores 0.9 … 0.5 and mask scores 0.8."""
    n = len(SCENE.labels)
    scores = np.linspace(0.9, 0.5, n)
    return Result(SCENE.masks, SCENE.boxes, SCENE.labels, scores, np.full(n, 0.8), SCENE.image.shape[:2])
