"""GroundedSAM: detector → batched SAM decode → Result, with a scripted detector and a tiny random SAM."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from grounded_sam.compat import LangSAM
from grounded_sam.pipeline import GroundedSAM
from grounded_sam.result import Result
from grounded_sam.text.base import Detections, Segments
from tests.pipelines import SCENE, SceneSegmenter, ScriptedDetector, scripted_pipeline


@pytest.fixture(scope="module")
def pipeline() -> GroundedSAM:
    return scripted_pipeline()


def test_predict_returns_one_mask_per_detected_box(pipeline: GroundedSAM) -> None:
    phrase = SCENE.labels[0]
    expected = [i for i, label in enumerate(SCENE.labels) if label == phrase]
    result = pipeline.predict(SCENE.image, phrase.upper() + ".")
    assert isinstance(result, Result) and len(result) == len(expected)
    assert result.masks.shape == (len(expected), 120, 160) and result.masks.dtype == bool
    assert result.labels == [phrase] * len(expected)
    np.testing.assert_allclose(result.boxes, SCENE.boxes[expected])
    assert result.mask_scores.shape == (len(expected),)


def test_masks_equal_the_predictors_batched_box_decode(pipeline: GroundedSAM) -> None:
    phrases = sorted(set(SCENE.labels))
    result = pipeline.predict(SCENE.image, phrases)
    pipeline.predictor.set_image(SCENE.image)
    masks, scores, _ = pipeline.predictor.predict_boxes(result.boxes)
    np.testing.assert_array_equal(result.masks, masks[:, 0])
    np.testing.assert_allclose(result.mask_scores, scores[:, 0], atol=1e-6)


def test_one_embedding_and_one_detector_call_per_image(pipeline: GroundedSAM) -> None:
    encoder, detector = pipeline.predictor.model.image_encoder, pipeline.detector
    encoder_calls, detector_calls = encoder.calls, detector.calls
    images = [SCENE.image[::-1].copy(), SCENE.image[:, ::-1].copy()]
    results = pipeline.predict_batch(images, ". ".join(SCENE.labels))
    assert len(results) == 2 and all(len(r) == len(SCENE.labels) for r in results)
    assert encoder.calls - encoder_calls == 2 and detector.calls - detector_calls == 2
    pipeline.predict(images[1], SCENE.labels[0])  # the same image again: its embedding is reused
    assert encoder.calls - encoder_calls == 2 and detector.calls - detector_calls == 3


@pytest.mark.parametrize("prompt", ["", "   ", ".,;", [], ["", " "]])
def test_empty_prompts_give_an_empty_result_without_running_models(pipeline: GroundedSAM, prompt) -> None:
    calls = pipeline.detector.calls
    result = pipeline.predict(SCENE.image, prompt)
    assert len(result) == 0 and result.masks.shape == (0, 120, 160) and result.image_size == (120, 160)
    assert pipeline.detector.calls == calls


@pytest.mark.parametrize("prompt", ["unicorn", "🦄 独角兽", "x" * 2000])
def test_no_detections_give_an_empty_result(pipeline: GroundedSAM, prompt: str) -> None:
    encoder_calls = pipeline.predictor.model.image_encoder.calls
    result = pipeline.predict(SCENE.image, prompt)
    assert len(result) == 0 and result.boxes.shape == (0, 4)
    assert pipeline.predictor.model.image_encoder.calls == encoder_calls  # no detection, no SAM


def test_every_input_type_gives_the_same_result(pipeline: GroundedSAM, tmp_path) -> None:
    path = tmp_path / "scene.png"
    Image.fromarray(SCENE.image).save(path)
    inputs = [
        SCENE.image,
        path,
        str(path),
        Image.fromarray(SCENE.image),
        torch.from_numpy(SCENE.image).permute(2, 0, 1),
    ]
    results = [pipeline.predict(item, SCENE.labels[0]) for item in inputs]
    for result in results[1:]:
        np.testing.assert_array_equal(result.masks, results[0].masks)


def test_thresholds_reach_the_detector(pipeline: GroundedSAM) -> None:
    result = pipeline.predict(SCENE.image, SCENE.labels[0], box_threshold=0.42)
    np.testing.assert_allclose(result.scores, 0.42)


def test_lang_sam_interface(pipeline: GroundedSAM) -> None:
    masks, boxes, phrases, logits = LangSAM(pipeline).predict(Image.fromarray(SCENE.image), SCENE.labels[0])
    assert isinstance(masks, torch.Tensor) and masks.dtype == torch.bool and masks.shape[1:] == (120, 160)
    assert boxes.shape == (len(phrases), 4) and logits.shape == (len(phrases),)
    assert set(phrases) == {SCENE.labels[0]}


def test_a_text_segmenter_without_predictor_gives_its_own_masks() -> None:
    pipeline = GroundedSAM(SceneSegmenter())
    phrase = SCENE.labels[0]
    expected = [i for i, label in enumerate(SCENE.labels) if label == phrase]
    result = pipeline.predict(SCENE.image, [phrase, "unicorn"])
    np.testing.assert_array_equal(result.masks, SCENE.masks[expected])
    assert result.labels == [phrase] * len(expected)
    np.testing.assert_allclose(result.mask_scores, 0.7)
    assert len(pipeline.predict(SCENE.image, "unicorn")) == 0


def test_a_box_detector_without_predictor_is_refused() -> None:
    with pytest.raises(ValueError, match="only gives boxes"):
        GroundedSAM(ScriptedDetector(SCENE.boxes, SCENE.labels))


def test_segments_check_their_shapes() -> None:
    detections = Detections(SCENE.boxes[:2], np.ones(2), [0, 0], ("a",))
    with pytest.raises(ValueError, match="masks must have shape"):
        Segments(detections, SCENE.masks[:1], np.ones(2))


@pytest.fixture(scope="module")
def sam3_folder(tmp_path_factory):
    from tests.text.sam3_builders import save_tiny_sam3

    return save_tiny_sam3(tmp_path_factory.mktemp("sam3"))


@pytest.fixture
def built_sams(monkeypatch) -> list:
    """The SAM names :meth:`GroundedSAM.from_pretrained` builds (a tiny random SAM stands in)."""
    from tests.sam.builders import random_sam

    names = []

    def fake_build_sam(name, checkpoint=None, device=None):
        names.append(name)
        return random_sam(seed=2)

    monkeypatch.setattr("grounded_sam.pipeline.build_sam", fake_build_sam)
    return names


def test_sam3_pipelines_build_no_sam_and_give_the_segmenters_masks(sam3_folder, built_sams) -> None:
    from grounded_sam.text.sam3 import Sam3Segmenter

    pipeline = GroundedSAM.from_sam3(sam3_folder, device="cpu", box_threshold=0.25)
    named = GroundedSAM.from_pretrained(detector="sam3", detector_checkpoint=sam3_folder, box_threshold=0.25)
    assert built_sams == [] and pipeline.predictor is None and named.predictor is None
    assert isinstance(pipeline.detector, Sam3Segmenter) and pipeline.detector.box_threshold == 0.25
    result = pipeline.predict(SCENE.image, "Cat. dog")
    expected = pipeline.detector.segment(SCENE.image, ["cat", "dog"])
    assert 0 < len(result) < 20 and result.image_size == (120, 160)
    np.testing.assert_array_equal(result.masks, expected.masks)
    np.testing.assert_array_equal(result.boxes, expected.detections.boxes)
    assert result.labels == expected.detections.labels
    np.testing.assert_array_equal(named.predict(SCENE.image, "Cat. dog").masks, result.masks)
    assert len(pipeline.predict(SCENE.image, "cat", box_threshold=0.99)) == 0


def test_a_named_sam_draws_the_masks_of_sam3s_boxes(sam3_folder, built_sams) -> None:
    pipeline = GroundedSAM.from_pretrained(
        "sam_vit_b", "sam3", detector_checkpoint=sam3_folder, box_threshold=0.25
    )
    assert built_sams == ["sam_vit_b"] and pipeline.predictor is not None
    result = pipeline.predict(SCENE.image, "cat")
    boxes = pipeline.detector.detect(SCENE.image, ["cat"])
    np.testing.assert_array_equal(result.boxes, boxes.boxes)
    pipeline.predictor.set_image(SCENE.image)
    masks, _, _ = pipeline.predictor.predict_boxes(boxes.boxes, multimask_output=False)
    np.testing.assert_array_equal(result.masks, masks[:, 0])


def test_box_detectors_still_get_sam_vit_b_by_default(tmp_path, built_sams) -> None:
    from tests.text.gdino_builders import save_tiny_grounding_dino

    pipeline = GroundedSAM.from_pretrained(detector_checkpoint=save_tiny_grounding_dino(tmp_path / "gd"))
    assert built_sams == ["sam_vit_b"] and pipeline.predictor is not None
