"""Sam2Predictor: equal to calling transformers' Sam2Model + Sam2Processor directly, with our interface."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from grounded_sam.pipeline import BoxPredictor, GroundedSAM
from grounded_sam.sam2 import Sam2Predictor
from grounded_sam.sam2.build import default_processor
from tests.pipelines import SCENE, ScriptedDetector
from tests.sam.builders import MALFORMED_PROMPTS
from tests.sam2.builders import IMAGE_SIZE, tiny_sam2

HEIGHT, WIDTH = 90, 150
LOW = IMAGE_SIZE // 4  # low-res logits side of the tiny model (256 for the released ones)
SCORE_ATOL = 1e-5


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, size=(15, 25, 3), dtype=np.uint8)
    return np.kron(base, np.ones((6, 6, 1), dtype=np.uint8))  # a smooth, non-square 90 x 150 image


@pytest.fixture(scope="module")
def predictor(image: np.ndarray) -> Sam2Predictor:
    predictor = Sam2Predictor(tiny_sam2(seed=1))
    predictor.set_image(image)
    return predictor


def count_encoder_calls(predictor: Sam2Predictor) -> list[int]:
    calls = [0]
    predictor.model.vision_encoder.register_forward_hook(lambda *_: calls.__setitem__(0, calls[0] + 1))
    return calls


def direct(predictor: Sam2Predictor, image: np.ndarray, multimask: bool, masks=None, **prompts) -> tuple:
    """The same prompts through transformers alone: processor → Sam2Model → post_process_masks.

    Returns masks (N, C, H, W), scores (N, C) and low-res logits (N, C, h, w) for the N prompts.
    """
    processor, model = predictor.processor, predictor.model
    inputs = processor(images=image, return_tensors="pt", **prompts)
    with torch.no_grad():
        outputs = model(**inputs, input_masks=masks, multimask_output=multimask)
    full = processor.post_process_masks(outputs.pred_masks, inputs["original_sizes"])[0]
    return full.numpy(), outputs.iou_scores[0].numpy(), outputs.pred_masks[0].numpy()


def assert_equal_to_direct(ours: tuple, reference: tuple) -> None:
    masks, scores, low_res = ours
    ref_masks, ref_scores, ref_low_res = reference
    assert masks.shape == ref_masks.shape and masks.dtype == bool
    np.testing.assert_array_equal(masks, ref_masks)
    np.testing.assert_allclose(scores, ref_scores, atol=SCORE_ATOL, rtol=0)
    np.testing.assert_allclose(low_res, ref_low_res, atol=1e-5, rtol=0)


POINTS = np.array([[40.0, 30.0], [100.0, 70.0]])
BOX = np.array([20.0, 10.0, 120.0, 80.0])


@pytest.mark.parametrize("multimask", [True, False])
@pytest.mark.parametrize(
    ("prompt", "hf_prompt"),
    [
        (
            {"point_coords": POINTS[:1], "point_labels": np.array([1])},
            {"input_points": [[POINTS[:1].tolist()]], "input_labels": [[[1]]]},
        ),
        (
            {"point_coords": POINTS, "point_labels": np.array([1, 0])},
            {"input_points": [[POINTS.tolist()]], "input_labels": [[[1, 0]]]},
        ),
        ({"box": BOX}, {"input_boxes": [[BOX.tolist()]]}),
        (
            {"box": BOX, "point_coords": POINTS[1:], "point_labels": np.array([0])},
            {
                "input_boxes": [[BOX.tolist()]],
                "input_points": [[POINTS[1:].tolist()]],
                "input_labels": [[[0]]],
            },
        ),
    ],
    ids=["point", "two-points", "box", "box+point"],
)
def test_single_prompt_equals_transformers(predictor, image, prompt, hf_prompt, multimask: bool) -> None:
    ours = predictor.predict(**prompt, multimask_output=multimask)
    channels = 3 if multimask else 1
    assert ours[0].shape == (channels, HEIGHT, WIDTH) and ours[1].shape == (channels,)
    assert ours[2].shape == (channels, LOW, LOW)
    reference = direct(predictor, image, multimask, **hf_prompt)
    assert_equal_to_direct(ours, tuple(array[0] for array in reference))


@pytest.mark.parametrize("multimask", [True, False])
def test_batched_boxes_equal_transformers_in_one_decoder_call(predictor, image, multimask: bool) -> None:
    boxes = np.array([[10, 10, 60, 50], [50, 20, 140, 85], [0, 0, 149, 89], [100, 40, 130, 70.0]])
    decoder_calls = [0]
    hook = predictor.model.mask_decoder.register_forward_hook(
        lambda *_: decoder_calls.__setitem__(0, decoder_calls[0] + 1)
    )
    try:
        ours = predictor.predict_boxes(boxes, multimask_output=multimask)
    finally:
        hook.remove()
    channels = 3 if multimask else 1
    assert decoder_calls == [1]
    assert ours[0].shape == (4, channels, HEIGHT, WIDTH) and ours[0].dtype == bool
    assert ours[1].shape == (4, channels) and ours[2].shape == (4, channels, LOW, LOW)
    assert_equal_to_direct(ours, direct(predictor, image, multimask, input_boxes=[boxes.tolist()]))
    # predict(box=(N, 4)) is the same batched call; a single box equals its row of the batch.
    np.testing.assert_array_equal(predictor.predict(box=boxes, multimask_output=multimask)[0], ours[0])
    single = predictor.predict(box=boxes[1], multimask_output=multimask)
    np.testing.assert_allclose(single[1], ours[1][1], atol=SCORE_ATOL)


def test_mask_input_equals_transformers(predictor, image) -> None:
    first = predictor.predict(point_coords=POINTS[:1], point_labels=np.array([1]))
    mask_input = first[2][np.argmax(first[1])][None]  # (1, h, w) logits of the best mask
    ours = predictor.predict(point_coords=POINTS, point_labels=np.array([1, 0]), mask_input=mask_input)
    reference = direct(
        predictor,
        image,
        True,
        masks=torch.from_numpy(mask_input[None]),
        input_points=[[POINTS.tolist()]],
        input_labels=[[[1, 0]]],
    )
    assert_equal_to_direct(ours, tuple(array[0] for array in reference))
    assert not np.allclose(ours[1], first[1])  # the mask prompt changed the answer


def test_batched_mask_inputs_equal_one_call_per_prompt(predictor) -> None:
    boxes = np.array([[10, 10, 60, 50], [50, 20, 140, 85], [30, 30, 90, 80.0]])
    logits = predictor.predict_boxes(boxes)[2]  # (3, 1, h, w)
    batched = predictor.predict(box=boxes, mask_input=logits, multimask_output=False, return_logits=True)
    assert batched[0].shape == (3, 1, HEIGHT, WIDTH) and batched[0].dtype == np.float32
    for i, box in enumerate(boxes):
        single = predictor.predict(box=box, mask_input=logits[i], multimask_output=False, return_logits=True)
        np.testing.assert_allclose(single[2], batched[2][i], atol=1e-5)
        np.testing.assert_allclose(single[1], batched[1][i], atol=SCORE_ATOL)


def test_predict_boxes_always_batched_and_empty(predictor) -> None:
    masks, scores, low_res = predictor.predict_boxes(np.array([[10, 10, 50, 50]]))
    assert (
        masks.shape == (1, 1, HEIGHT, WIDTH) and scores.shape == (1, 1) and low_res.shape == (1, 1, LOW, LOW)
    )
    masks, scores, low_res = predictor.predict_boxes(np.zeros((0, 4)), multimask_output=True)
    assert masks.shape == (0, 3, HEIGHT, WIDTH) and masks.dtype == bool
    assert scores.shape == (0, 3) and low_res.shape == (0, 3, LOW, LOW)


def test_boxes_outside_the_image_are_clipped(predictor) -> None:
    inside = predictor.predict(box=np.array([0, 0, WIDTH, HEIGHT]))
    outside = predictor.predict(box=np.array([-50, -20, 900, 700]))
    np.testing.assert_array_equal(inside[0], outside[0])
    np.testing.assert_allclose(inside[1], outside[1], atol=1e-6)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        *MALFORMED_PROMPTS,
        ({"mask_input": np.zeros((1, 256, 256))}, "low-res logits of size"),
        (
            {"box": np.array([[0, 0, 9, 9], [1, 1, 8, 8]]), "mask_input": np.zeros((1, LOW, LOW))},
            "batch size",
        ),
        ({}, "at least one prompt"),
    ],
)
def test_malformed_prompts_raise_value_error(predictor, kwargs, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        predictor.predict(**kwargs)


def test_predict_before_set_image_is_a_clear_error() -> None:
    with pytest.raises(RuntimeError, match="set_image"):
        Sam2Predictor(tiny_sam2()).predict(box=np.array([0, 0, 10, 10]))


def test_the_embedding_is_computed_once_per_image(image, tmp_path) -> None:
    predictor = Sam2Predictor(tiny_sam2(seed=2))
    calls = count_encoder_calls(predictor)
    path = tmp_path / "image.png"
    Image.fromarray(image).save(path)
    predictor.set_image(image)
    first = predictor.get_image_embedding()
    assert first.shape == (1, 32, IMAGE_SIZE // 16, IMAGE_SIZE // 16)
    same_pixels = [image.copy(), path, Image.fromarray(image), torch.from_numpy(image).permute(2, 0, 1)]
    for item in same_pixels:
        predictor.set_image(item)
    predictor.set_image(np.ascontiguousarray(image[..., ::-1]), image_format="BGR")
    for _ in range(3):
        predictor.predict_boxes(np.array([[10, 10, 60, 50]]))
    assert calls == [1] and predictor.get_image_embedding() is first
    predictor.set_image(image[::-1].copy())
    assert calls == [2] and predictor.original_size == (HEIGHT, WIDTH)
    predictor.reset_image()
    assert not predictor.is_image_set
    predictor.set_image(image)
    assert calls == [3]
    torch.testing.assert_close(predictor.get_image_embedding(), first)


def test_an_embedding_can_be_handed_to_another_predictor(predictor) -> None:
    other = Sam2Predictor(predictor.model, predictor.processor)
    other.set_embedding(predictor.embedding)
    np.testing.assert_array_equal(other.predict(box=BOX)[2], predictor.predict(box=BOX)[2])


def test_model_and_processor_are_checked() -> None:
    model = tiny_sam2()
    with pytest.raises(TypeError, match="Sam2Model"):
        Sam2Predictor(torch.nn.Linear(2, 2))
    wrong = default_processor(model)
    wrong.image_processor.size = {"height": 256, "width": 256}
    with pytest.raises(ValueError, match="128x128"):
        Sam2Predictor(model, wrong)
    with pytest.raises(ValueError, match="image_format"):
        Sam2Predictor(model).set_image(np.zeros((8, 8, 3), np.uint8), image_format="HSV")


def test_grounded_sam_runs_on_sam2() -> None:
    predictor = Sam2Predictor(tiny_sam2(seed=3))
    assert isinstance(predictor, BoxPredictor)
    pipeline = GroundedSAM(ScriptedDetector(SCENE.boxes, SCENE.labels), predictor)
    assert pipeline.predictor is predictor
    phrases = sorted(set(SCENE.labels))
    result = pipeline.predict(SCENE.image, phrases)
    assert len(result) == len(SCENE.labels) and result.masks.shape == (
        len(SCENE.labels),
        *SCENE.image.shape[:2],
    )
    masks, scores, _ = predictor.predict_boxes(result.boxes)
    np.testing.assert_array_equal(result.masks, masks[:, 0])
    np.testing.assert_allclose(result.mask_scores, scores[:, 0], atol=1e-6)
