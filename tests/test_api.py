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


@pytest.fixture
def fresh_default():
    api.default_pipeline.cache_clear()
    yield api.default_pipeline
    api.default_pipeline.cache_clear()


def test_sam3_as_the_configured_detector_needs_no_sam(offline_home, monkeypatch, fresh_default) -> None:
    from grounded_sam.text.sam3 import Sam3Segmenter
    from tests.text.sam3_builders import save_tiny_sam3

    monkeypatch.setenv(api.DETECTOR_ENV, "sam3")
    with pytest.raises(WeightsNotFoundError, match="gated on the Hugging Face Hub"):
        grounded_sam.predict(SCENE.image, "window")  # SAM 3's weights are missing, not SAM's
    folder = save_tiny_sam3(offline_home / "sam3")
    fresh_default.cache_clear()
    pipeline = fresh_default(device="cpu")
    assert pipeline.predictor is None and isinstance(pipeline.detector, Sam3Segmenter)
    by_folder = fresh_default(detector=str(folder), device="cpu")  # a SAM 3 folder is told by its config
    assert by_folder.predictor is None and isinstance(by_folder.detector, Sam3Segmenter)
    result = grounded_sam.predict(SCENE.image, "cat", box_threshold=0.0)
    assert len(result) == 10 and result.masks.shape == (10, 120, 160) and set(result.labels) == {"cat"}


def test_a_detector_alone_gets_the_embedded_demo_sam(monkeypatch, fresh_default) -> None:
    built = []
    monkeypatch.setattr(
        api.GroundedSAM, "from_pretrained", lambda *args, **kwargs: built.append((args, kwargs)) or "pipeline"
    )
    assert fresh_default(detector="grounding_dino_tiny") == "pipeline"
    assert built[0][0] == ("demo_sam", "grounding_dino_tiny")
