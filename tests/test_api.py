"""grounded_sam.predict: module-level entry point, default pipeline configuration."""

from __future__ import annotations

import pytest

import grounded_sam
from grounded_sam import api
from grounded_sam.weights import WeightsNotFoundError
from tests.pipelines import SCENE, scripted_pipeline


def test_predict_with_an_explicit_pipeline() -> None:
    pipeline = scripted_pipeline()
    result = grounded_sam.predict(SCENE.image, SCENE.labels[0], pipeline=pipeline)
    assert len(result) >= 1 and set(result.labels) == {SCENE.labels[0]}
    batch = grounded_sam.predict([SCENE.image, SCENE.image], SCENE.labels[0], pipeline=pipeline)
    assert isinstance(batch, list) and [len(r) for r in batch] == [len(result)] * 2


def test_configured_real_weights_that_are_missing_give_a_clear_error(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("GROUNDED_SAM_HOME", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv(api.SAM_ENV, "sam_vit_b")
    monkeypatch.setenv(api.DETECTOR_ENV, "grounding_dino_tiny")
    api.default_pipeline.cache_clear()
    try:
        with pytest.raises(WeightsNotFoundError, match=r"sam_vit_b_01ec64\.pth"):
            grounded_sam.predict(SCENE.image, "window")
    finally:
        api.default_pipeline.cache_clear()


def test_unknown_configured_model_suggests_names(monkeypatch) -> None:
    monkeypatch.setenv(api.SAM_ENV, "sam_vit_q")
    api.default_pipeline.cache_clear()
    try:
        with pytest.raises(ValueError, match="Did you mean"):
            api.default_pipeline()
    finally:
        api.default_pipeline.cache_clear()
