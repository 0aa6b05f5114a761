"""A scripted detector and a tiny random SAM for pipeline-level tests."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from grounded_sam.data import SceneConfig, make_scene
from grounded_sam.pipeline import GroundedSAM
from grounded_sam.sam.predictor import SamPredictor
from grounded_sam.text.base import Detections, Segments
from tests.sam.builders import random_sam

SCENE = make_scene(7, SceneConfig(size=(120, 160), min_objects=3, max_objects=4, size_range=(0.3, 0.5)))


class ScriptedDetector:
    """Returns the scene's ground-truth boxes of the phrases it is asked for, and counts its calls."""

    def __init__(self, boxes: np.ndarray, labels: Sequence[str]) -> None:
        self.boxes, self.labels, self.calls = boxes, list(labels), 0

    def detect(self, image, phrases, *, box_threshold=None, text_threshold=None) -> Detections:
        self.calls += 1
        assert image.dtype == np.uint8 and image.ndim == 3
        keep = [i for i, label in enumerate(self.labels) if label in phrases]
        ids = [list(phrases).index(self.labels[i]) for i in keep]
        scores = (
            np.linspace(0.9, 0.5, len(keep)) if box_threshold is None else np.full(len(keep), box_threshold)
        )
        return Detections(self.boxes[keep], scores, ids, tuple(phrases))


class SceneSegmenter:
    """A text segmenter (like SAM 3) that returns SCENE's ground-truth masks of the phrases asked for."""

    def segment(self, image, phrases, *, box_threshold=None, text_threshold=None) -> Segments:
        keep = [i for i, label in enumerate(SCENE.labels) if label in phrases]
        ids = [list(phrases).index(SCENE.labels[i]) for i in keep]
        detections = Detections(SCENE.boxes[keep], np.full(len(keep), 0.8), ids, tuple(phrases))
        return Segments(detections, SCENE.masks[keep], np.full(len(keep), 0.7))


class CountingEncoder(torch.nn.Module):
    def __init__(self, encoder: torch.nn.Module) -> None:
        super().__init__()
        self.inner, self.calls, self.img_size = encoder, 0, encoder.img_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return self.inner(x)


def scripted_pipeline() -> GroundedSAM:
    """A pipeline whose detector returns SCENE's ground-truth boxes and whose encoder counts calls."""
    model = random_sam(seed=2)
    model.image_encoder = CountingEncoder(model.image_encoder)
    return GroundedSAM(ScriptedDetector(SCENE.boxes, SCENE.labels), SamPredictor(model))


class TruthfulPredictor(SamPredictor):
    """A random SAM whose box masks are SCENE's ground truth (its point prompts stay the network's), so a
    test knows which instance each pixel of the result belongs to."""

    def predict_boxes(self, boxes, multimask_output=False, return_logits=False):
        masks, scores, low_res = super().predict_boxes(boxes, multimask_output, return_logits)
        for row, box in enumerate(np.asarray(boxes, dtype=np.float32)):
            match = np.flatnonzero(np.abs(SCENE.boxes - box).max(axis=1) < 1e-3)
            if len(match):
                masks[row] = SCENE.masks[match[0]]
        return masks, scores, low_res


def truthful_pipeline() -> GroundedSAM:
    """The scripted detector with SCENE's true masks (a random SAM for clicks)."""
    return GroundedSAM(ScriptedDetector(SCENE.boxes, SCENE.labels), TruthfulPredictor(random_sam(seed=2)))
