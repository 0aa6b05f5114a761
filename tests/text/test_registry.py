"""The detector registry: names, lookups, weights resolution and building."""

from __future__ import annotations

import shutil

import pytest

from grounded_sam.text.grounding_dino import GroundingDinoDetector
from grounded_sam.text.registry import build_detector, get_detector_spec, list_detectors
from grounded_sam.weights import WeightsNotFoundError
from tests.text.gdino_builders import save_tiny_grounding_dino


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory):
    return save_tiny_grounding_dino(tmp_path_factory.mktemp("tiny-gdino"))


def test_registered_detectors_are_hugging_face_snapshots() -> None:
    assert list_detectors() == ["grounding_dino_base", "grounding_dino_tiny", "sam3"]
    tiny = get_detector_spec("grounding_dino_tiny")
    assert tiny.weights.hf_repo_id == "IDEA-Research/grounding-dino-tiny" and tiny.weights.is_snapshot
    assert tiny.weights.filename == "grounding-dino-tiny"
    assert get_detector_spec("IDEA-Research/grounding-dino-base").name == "grounding_dino_base"


def test_unknown_names_suggest_close_ones() -> None:
    with pytest.raises(ValueError, match="Did you mean 'grounding_dino_tiny'"):
        get_detector_spec("grounding_dino_tiyn")


def test_missing_weights_name_the_folder_to_fill(offline_home) -> None:
    with pytest.raises(WeightsNotFoundError) as info:
        build_detector("grounding_dino_tiny")
    message = str(info.value)
    assert str(offline_home / "grounding-dino-tiny") in message
    assert "IDEA-Research/grounding-dino-tiny" in message and "HF_HUB_OFFLINE" in message
    with pytest.raises(WeightsNotFoundError, match="not found at"):
        build_detector(checkpoint=offline_home / "nowhere")


def test_builds_from_an_explicit_folder_with_options(offline_home, tiny_folder) -> None:
    detector = build_detector(checkpoint=tiny_folder, device="cpu", box_threshold=0.4, per_class=True)
    assert isinstance(detector, GroundingDinoDetector)
    assert detector.box_threshold == 0.4 and detector.per_class and detector.text_threshold == 0.25
    with pytest.raises(TypeError, match="box_treshold"):
        build_detector(checkpoint=tiny_folder, box_treshold=0.4)


def test_finds_the_snapshot_in_the_home_folder(offline_home, tiny_folder) -> None:
    shutil.copytree(tiny_folder, offline_home / "grounding-dino-base")
    detector = build_detector("grounding_dino_base", device="cpu")
    assert detector.model.config.num_queries == 20
    by_repo = GroundingDinoDetector.from_pretrained("IDEA-Research/grounding-dino-base", device="cpu")
    assert by_repo.model.config.d_model == 32


def test_labeler_registry_lists_clip_models_and_reports_missing_weights(tmp_path, monkeypatch) -> None:
    from grounded_sam.text.registry import build_labeler, list_labelers
    from grounded_sam.weights import WeightsNotFoundError

    assert "clip_vit_b32" in list_labelers()
    monkeypatch.setenv("GROUNDED_SAM_HOME", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    with pytest.raises(WeightsNotFoundError, match=str(tmp_path)):
        build_labeler("clip_vit_b32", device="cpu")
    with pytest.raises(ValueError, match="clip_vit_b32"):
        build_labeler("clip_vit_b33")
