"""SamPredictor: parity with segment_anything's predictor on identical random weights, and input checks."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from segment_anything import SamPredictor as ReferencePredictor

from grounded_sam.sam.predictor import SamPredictor
from tests.sam.builders import MALFORMED_PROMPTS, TINY_VIT_SAM, random_sam, reference_twin

ATOL = 1e-4


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, size=(30, 45, 3), dtype=np.uint8)
    # A smooth, non-square image: upsampled noise gives the network structure to respond to.
    return np.kron(base, np.ones((6, 6, 1), dtype=np.uint8))  # 180 x 270


@pytest.fixture(scope="module", params=[True, False], ids=["accelerated", "plain"])
def predictors(image: np.ndarray, request: pytest.FixtureRequest) -> tuple[SamPredictor, ReferencePredictor]:
    torch.manual_seed(0)
    ours = SamPredictor(random_sam(TINY_VIT_SAM, seed=1, accelerate=request.param))
    reference = ReferencePredictor(reference_twin(ours.model, TINY_VIT_SAM))
    ours.set_image(image)
    reference.set_image(image)
    return ours, reference


def assert_same(ours: tuple, reference: tuple) -> None:
    masks, scores, low_res = ours
    ref_masks, ref_scores, ref_low_res = (np.asarray(x) for x in reference)
    assert masks.shape == ref_masks.shape
    np.testing.assert_allclose(scores, ref_scores, atol=ATOL)
    np.testing.assert_allclose(low_res, ref_low_res, atol=ATOL)
    if masks.dtype == bool:
        # Pixels whose logit sits within float noise of the threshold may legitimately flip.
        assert (masks != ref_masks).mean() < 1e-4
    else:
        np.testing.assert_allclose(masks, ref_masks, atol=ATOL)


def test_embedding_matches_reference(predictors) -> None:
    ours, reference = predictors
    assert ours.input_size == reference.input_size
    assert ours.original_size == reference.original_size
    torch.testing.assert_close(ours.features, reference.features, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("multimask", [True, False])
@pytest.mark.parametrize(
    "prompt",
    [
        {"point_coords": np.array([[100.0, 80.0]]), "point_labels": np.array([1])},
        {"point_coords": np.array([[100.0, 80.0], [30.0, 150.0]]), "point_labels": np.array([1, 0])},
        {"box": np.array([20.0, 30.0, 200.0, 160.0])},
        {
            "box": np.array([20.0, 30.0, 200.0, 160.0]),
            "point_coords": np.array([[60.0, 70.0]]),
            "point_labels": np.array([0]),
        },
    ],
    ids=["point", "two-points", "box", "box+point"],
)
def test_single_prompt_parity(predictors, prompt, multimask: bool) -> None:
    ours, reference = predictors
    assert_same(
        ours.predict(**prompt, multimask_output=multimask),
        reference.predict(**prompt, multimask_output=multimask),
    )


def test_logits_and_mask_input_parity(predictors) -> None:
    ours, reference = predictors
    point = {"point_coords": np.array([[120.0, 90.0]]), "point_labels": np.array([1])}
    first = ours.predict(**point, return_logits=True)
    assert_same(first, reference.predict(**point, return_logits=True))
    mask_input = first[2][np.argmax(first[1])][None]
    assert_same(
        ours.predict(**point, mask_input=mask_input, multimask_output=False),
        reference.predict(**point, mask_input=mask_input, multimask_output=False),
    )


@pytest.mark.parametrize("multimask", [True, False])
def test_batched_boxes_parity(predictors, multimask: bool) -> None:
    ours, reference = predictors
    boxes = np.array([[10, 10, 120, 100], [50, 40, 260, 170], [0, 0, 269, 179], [200, 100, 240, 150.0]])
    masks, scores, low_res = ours.predict(box=boxes, multimask_output=multimask)
    channels = 3 if multimask else 1
    assert masks.shape == (4, channels, 180, 270) and scores.shape == (4, channels)
    transformed = reference.transform.apply_boxes_torch(torch.as_tensor(boxes, dtype=torch.float), (180, 270))
    ref = reference.predict_torch(None, None, boxes=transformed, multimask_output=multimask)
    assert_same((masks, scores, low_res), tuple(t.numpy() for t in ref))
    # The batched call equals N single calls.
    for i, box in enumerate(boxes):
        single = ours.predict(box=box, multimask_output=multimask)
        np.testing.assert_allclose(single[1], scores[i], atol=ATOL)


def test_predict_boxes_always_batched_and_empty(predictors) -> None:
    ours, _ = predictors
    masks, scores, low_res = ours.predict_boxes(np.array([[10, 10, 50, 50]]))
    assert masks.shape == (1, 1, 180, 270) and scores.shape == (1, 1) and low_res.shape == (1, 1, 64, 64)
    masks, scores, low_res = ours.predict_boxes(np.zeros((0, 4)))
    assert masks.shape == (0, 1, 180, 270) and masks.dtype == bool
    assert scores.shape == (0, 1) and low_res.shape == (0, 1, 64, 64)


def test_boxes_outside_the_image_are_clipped(predictors) -> None:
    ours, _ = predictors
    inside = ours.predict(box=np.array([0, 0, 270, 180]))
    outside = ours.predict(box=np.array([-50, -20, 900, 700]))
    np.testing.assert_allclose(inside[1], outside[1], atol=1e-6)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        *MALFORMED_PROMPTS,
        ({}, "at least one prompt"),
    ],
)
def test_malformed_prompts_raise_value_error(predictors, kwargs, message: str) -> None:
    ours, _ = predictors
    with pytest.raises(ValueError, match=message):
        ours.predict(**kwargs)


def test_predict_before_set_image_is_a_clear_error() -> None:
    predictor = SamPredictor(random_sam())
    with pytest.raises(RuntimeError, match="set_image"):
        predictor.predict(box=np.array([0, 0, 10, 10]))


def test_set_image_accepts_every_input_type(predictors, image: np.ndarray, tmp_path) -> None:
    from PIL import Image

    ours, _ = predictors
    expected = ours.features.clone()
    path = tmp_path / "image.png"
    Image.fromarray(image).save(path)
    inputs = [path, str(path), Image.fromarray(image), torch.from_numpy(image).permute(2, 0, 1).contiguous()]
    try:
        for item in inputs:
            ours.set_image(item)
            torch.testing.assert_close(ours.features, expected, atol=1e-6, rtol=0)
        ours.set_image(np.ascontiguousarray(image[..., ::-1]), image_format="BGR")
        torch.testing.assert_close(ours.features, expected, atol=1e-6, rtol=0)
        ours.reset_image()
        assert not ours.is_image_set
    finally:
        ours.set_image(image)


def test_a_saved_embedding_can_be_handed_to_another_predictor(predictors) -> None:
    ours, _ = predictors
    other = SamPredictor(ours.model)
    other.set_embedding(ours.embedding)
    box = np.array([20.0, 30.0, 200.0, 160.0])
    np.testing.assert_array_equal(other.predict(box=box)[2], ours.predict(box=box)[2])


def test_setting_the_same_pixels_again_keeps_the_embedding(image: np.ndarray) -> None:
    predictor = SamPredictor(random_sam(seed=3))
    predictor.set_image(image)
    first = predictor.features
    predictor.set_image(image.copy())
    assert predictor.features is first
    predictor.set_image(image[::-1].copy())
    assert predictor.features is not first
    predictor.reset_image()
    predictor.set_image(image)
    torch.testing.assert_close(predictor.features, first)


def test_decoding_in_small_passes_gives_the_same_outputs(predictors, monkeypatch) -> None:
    from grounded_sam.sam import budgets
    from grounded_sam.sam.fast.mask_decoder import prompts_per_pass

    ours, _ = predictors
    rng = np.random.default_rng(3)
    corners = rng.uniform(0, 150, (7, 2))
    boxes = np.concatenate([corners, corners + rng.uniform(20, 90, (7, 2))], axis=1)
    points = rng.uniform(0, 200, (7, 2, 2))
    labels = np.ones((7, 2), dtype=np.int64)
    whole = ours.predict(box=boxes, point_coords=points, point_labels=labels, mask_input=None)
    per_prompt = ours.features[0].numel() * 4
    monkeypatch.setattr(budgets, "PASS_BYTES", 3 * per_prompt)  # passes of 3, 3 and 1 prompts
    assert prompts_per_pass(ours.features) == 3
    parts = ours.predict(box=boxes, point_coords=points, point_labels=labels, mask_input=None)
    np.testing.assert_array_equal(parts[0], whole[0])
    np.testing.assert_allclose(parts[1], whole[1], atol=1e-6)
    np.testing.assert_allclose(parts[2], whole[2], atol=1e-5)
