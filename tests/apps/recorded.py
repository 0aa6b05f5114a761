"""A pipeline factory for the app tests that remembers what it built, so tests can count encoder calls."""

from __future__ import annotations

from grounded_sam.pipeline import GroundedSAM
from tests.pipelines import SceneSegmenter, scripted_pipeline

BUILT: list[GroundedSAM] = []


def recorded_pipeline() -> GroundedSAM:
    """``tests.pipelines.scripted_pipeline()``, appended to `BUILT`."""
    pipeline = scripted_pipeline()
    BUILT.append(pipeline)
    return pipeline


def encoder_calls() -> int:
    """Image-encoder calls of the last pipeline built."""
    return BUILT[-1].predictor.model.image_encoder.calls


def segmenting_pipeline() -> GroundedSAM:
    """A pipeline without SAM: its text stage draws the masks itself, as SAM 3 does."""
    return GroundedSAM(SceneSegmenter())
