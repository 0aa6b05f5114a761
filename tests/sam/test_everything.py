"""MaskGenerator: parity with segment_anything's automatic mask generator, box prompts, labels, errors."""

from __future__ import annotations

import functools
from typing import Any

import cv2
import numpy as np
import pytest
import torch
from segment_anything import SamAutomaticMaskGenerator
from segment_anything import SamPredictor as ReferencePredictor

from grounded_sam.data import SceneConfig, make_scene
from grounded_sam.everything_labels import everything_result
from grounded_sam.ops.rle import rle_to_mask
from grounded_sam.result import Result
from grounded_sam.sam import build_sam
from grounded_sam.sam.everything import EverythingConfig, MaskGenerator
from grounded_sam.sam.everything.mask_ops import counts_to_mask
from grounded_sam.sam.modeling.common import LayerNorm2d
from grounded_sam.sam.modeling.sam import Sam
from grounded_sam.sam.predictor import SamPredictor
from grounded_sam.sam.registry import get_spec
from grounded_sam.text.base import Detections, Labels
from tests.sam.builders import TINY_VIT_SAM, random_sam, reference_twin

SCORE_ATOL = 1e-4
LOOSE = {"pred_iou_thresh": 0.0, "stability_score_thresh": 0.2, "stability_score_offset": 0.05}


def structured_sam(seed: int = 1, accelerate: bool = True) -> Sam:
    """Random weights tuned so that masks follow the image and move with the prompt.

    Plain random weights give all-or-nothing masks with a 4×4 checkerboard (the transposed convolutions'
    kernels) that every prompt shares; with identity LayerNorms, position-independent upscaling kernels
    and higher-frequency positional encodings the masks become blobs that differ from prompt to prompt.
    """
    model = random_sam(TINY_VIT_SAM, seed=seed, accelerate=accelerate)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, (torch.nn.LayerNorm, LayerNorm2d)):
                module.weight.fill_(1.0)
                module.bias.zero_()
        for conv in (model.mask_decoder.output_upscaling[0], model.mask_decoder.output_upscaling[3]):
            conv.weight.copy_(conv.weight.mean((2, 3), keepdim=True).expand_as(conv.weight))
        model.prompt_encoder.pe_layer.positional_encoding_gaussian_matrix.mul_(3.0)
    return model


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    rng = np.random.default_rng(0)
    coarse = rng.integers(0, 256, size=(4, 6, 3)).astype(np.float32)
    smooth = cv2.resize(coarse, (300, 200), interpolation=cv2.INTER_CUBIC)
    return smooth.clip(0, 255).astype(np.uint8)  # 200 x 300, non-square


@functools.cache
def twins(seed: int, accelerate: bool = True) -> tuple[Sam, Any]:
    """Our structured model of ``seed`` and the reference network holding the same weights."""
    ours = structured_sam(seed, accelerate)
    return ours, reference_twin(ours, TINY_VIT_SAM)


@pytest.fixture(scope="module")
def models() -> tuple[Sam, Any]:
    torch.manual_seed(0)
    return twins(1)


NEAR_THRESHOLD = 1e-5  # |logit| below this may flip between two implementations (float noise ~1e-6)


def as_mask(segmentation: Any) -> np.ndarray:
    if isinstance(segmentation, np.ndarray):
        return segmentation
    if isinstance(segmentation["counts"], list):
        return counts_to_mask(segmentation["counts"], tuple(segmentation["size"]))
    return rle_to_mask(segmentation)


def reference_logits(reference_model: Any, image: np.ndarray, record: dict[str, Any]) -> np.ndarray:
    """The reference's full-image logits of the mask in ``record`` (-inf outside its crop)."""
    x, y, w, h = record["crop_box"]
    predictor = ReferencePredictor(reference_model)
    predictor.set_image(image[y : y + h, x : x + w])
    point = np.array(record["point_coords"], dtype=np.float64) - [x, y]
    masks, ious, _ = predictor.predict(point_coords=point, point_labels=np.array([1]), return_logits=True)
    full = np.full(image.shape[:2], -np.inf, dtype=np.float32)
    full[y : y + h, x : x + w] = masks[np.argmin(np.abs(ious - record["predicted_iou"]))]
    return full


def assert_same_records(
    ours: list[dict[str, Any]], reference: list[dict[str, Any]], reference_model: Any, image: np.ndarray
) -> int:
    """Same masks in the same order, scores within SCORE_ATOL. A mask pixel may differ only where the
    reference's logit is within NEAR_THRESHOLD of the threshold; returns how many pixels did."""
    assert len(ours) == len(reference)
    flipped = 0
    for mine, theirs in zip(ours, reference, strict=True):
        assert mine.keys() == theirs.keys()
        assert type(mine["segmentation"]) is type(theirs["segmentation"])
        for key in ("point_coords", "crop_box"):  # the same prompt: the same place in the order
            assert mine[key] == theirs[key], key
        for key in ("predicted_iou", "stability_score"):
            assert type(mine[key]) is float
            both_nan = np.isnan(mine[key]) and np.isnan(theirs[key])  # 0 / 0 stability of an empty mask
            assert both_nan or abs(mine[key] - theirs[key]) <= SCORE_ATOL, key
        differ = as_mask(mine["segmentation"]) != as_mask(theirs["segmentation"])
        if not differ.any():
            if isinstance(mine["segmentation"], dict):  # the RLE itself, not only the decoded mask
                assert mine["segmentation"] == theirs["segmentation"]
            assert (mine["area"], mine["bbox"]) == (theirs["area"], theirs["bbox"])
            continue
        logits = reference_logits(reference_model, image, theirs)
        assert np.abs(logits[differ]).max() <= NEAR_THRESHOLD
        assert abs(mine["area"] - theirs["area"]) <= differ.sum()
        flipped += int(differ.sum())
    return flipped


PARITY_CASES = {
    "grid": {**LOOSE, "points_per_side": 10, "box_nms_thresh": 0.95},
    "iou_gated_rle": {
        **LOOSE,
        "points_per_side": 10,
        "pred_iou_thresh": 2.0,
        "stability_score_thresh": 0.0,
        "output_mode": "uncompressed_rle",
    },
    "crops_coco": {
        **LOOSE,
        "seed": 3,  # a model whose masks survive the crop-edge filter in the sub-crops
        "stability_score_thresh": 0.05,
        "points_per_side": 6,
        "crop_n_layers": 1,
        "box_nms_thresh": 0.95,
        "crop_nms_thresh": 0.95,
        "output_mode": "coco_rle",
    },
    "small_regions": {**LOOSE, "points_per_side": 8, "box_nms_thresh": 0.95, "min_mask_region_area": 500},
}


@pytest.mark.parametrize("accelerate", [True, False], ids=["accelerated", "plain"])
@pytest.mark.parametrize("case", PARITY_CASES)
def test_parity_with_reference(image: np.ndarray, case: str, accelerate: bool) -> None:
    params = dict(PARITY_CASES[case])
    ours_model, reference_model = twins(params.pop("seed", 1), accelerate)
    generator = MaskGenerator(ours_model, **params)
    ours = generator.generate(image)
    reference = SamAutomaticMaskGenerator(reference_model, **params).generate(image)
    flipped = assert_same_records(ours, reference, reference_model, image)
    assert flipped <= 1e-3 * len(ours) * image.shape[0] * image.shape[1]
    stats = generator.stats
    assert stats.before_nms >= 24, stats  # dozens of masks reached suppression
    assert len(ours) >= 2
    if case == "iou_gated_rle" and accelerate:
        assert 0 < stats.upscaled_prompts < stats.prompts, stats  # the mask branch was skipped for some
    if case == "crops_coco":
        assert len({tuple(r["crop_box"]) for r in ours}) >= 2  # masks from the image and from a sub-crop
    if case == "small_regions":
        plain = MaskGenerator(ours_model, **{**params, "min_mask_region_area": 0}).generate(image)
        changed = [
            not np.array_equal(a["segmentation"], b["segmentation"])
            for a, b in zip(ours, plain, strict=False)
        ]
        assert len(plain) != len(ours) or any(changed)


def test_parity_with_reference_on_the_small_encoder() -> None:
    """The small-encoder case of ``bench_everything.py`` (the demo model, a demo scene, no filters), smaller:
    a 384 x 512 scene (two resizes per mask, tiles of 4 x 4 pixels) and a 12 x 12 grid."""
    ours_model = build_sam("demo_sam", device="cpu").eval()
    reference_model = reference_twin(ours_model, get_spec("demo_sam").config)
    image = make_scene(0, SceneConfig(size=(384, 512))).image
    params = {"points_per_side": 12, "pred_iou_thresh": 0.0, "stability_score_thresh": 0.0}
    generator = MaskGenerator(ours_model, **params)
    ours = generator.generate(image)
    reference = SamAutomaticMaskGenerator(reference_model, **params).generate(image)
    flipped = assert_same_records(ours, reference, reference_model, image)
    assert generator.stats.before_nms == 3 * 12 * 12 and len(ours) >= 10
    assert flipped <= 1e-4 * len(ours) * image.shape[0] * image.shape[1]


def test_batch_size_and_config_object_do_not_change_output(models, image: np.ndarray) -> None:
    model = models[0]
    params = {**LOOSE, "points_per_side": 6, "box_nms_thresh": 0.95}
    expected = MaskGenerator(model, **params).generate(image)
    small_batches = MaskGenerator(model, **{**params, "points_per_batch": 5}).generate(image)
    from_config = MaskGenerator(model, config=EverythingConfig(**params)).generate(image)
    assert len(expected) >= 3
    for other in (small_batches, from_config):
        assert len(other) == len(expected)
        for a, b in zip(other, expected, strict=True):
            np.testing.assert_array_equal(a["segmentation"], b["segmentation"])
            assert abs(a["predicted_iou"] - b["predicted_iou"]) < 1e-5


def test_generate_result_matches_records(models, image: np.ndarray) -> None:
    generator = MaskGenerator(models[0], **LOOSE, points_per_side=6, box_nms_thresh=0.95)
    records = generator.generate(image)
    result = generator.generate_result(image)
    assert isinstance(result, Result)
    assert len(result) == len(records) >= 3
    assert result.image_size == image.shape[:2]
    assert result.labels == ["object"] * len(records)
    for i, record in enumerate(records):
        np.testing.assert_array_equal(result.masks[i], record["segmentation"])
        x, y, w, h = record["bbox"]
        np.testing.assert_array_equal(result.boxes[i], [x, y, x + w + 1, y + h + 1])  # far edge exclusive
        assert result.scores[i] == pytest.approx(record["predicted_iou"])
        assert result.mask_scores[i] == pytest.approx(record["predicted_iou"])


class FakeLabeler:
    """Names a mask 'big' if its area is above the median, else gives no label (-1)."""

    def label(self, image: np.ndarray, masks: np.ndarray, classes: list[str]) -> Labels:
        assert masks.shape[1:] == image.shape[:2]
        areas = masks.reshape(len(masks), -1).sum(1)
        return Labels(np.where(areas > np.median(areas), 0, -1), areas / areas.max(), tuple(classes))


def test_generate_result_with_labels(models, image: np.ndarray) -> None:
    generator = MaskGenerator(models[0], **LOOSE, points_per_side=6, box_nms_thresh=0.95)
    result = everything_result(generator, image, ["big"], labeler=FakeLabeler())
    areas = result.areas
    assert len(result) >= 3
    assert result.labels == ["big" if a > np.median(areas) else "no label" for a in areas]
    assert {"big", "no label"} <= set(result.labels)
    np.testing.assert_allclose(result.scores, areas / areas.max(), rtol=1e-6)
    unnamed = generator.generate_result(image)
    assert unnamed.labels == ["object"] * len(result)
    np.testing.assert_array_equal(unnamed.masks, result.masks)
    np.testing.assert_array_equal(unnamed.mask_scores, result.mask_scores)
    with pytest.raises(ValueError, match="labeler"):
        everything_result(generator, image, ["big"])


def test_nothing_found_gives_empty_outputs(models, image: np.ndarray) -> None:
    generator = MaskGenerator(models[0], points_per_side=4, pred_iou_thresh=50.0)
    assert generator.generate(image) == []
    assert generator.stats.upscaled_prompts == 0  # no mask could pass: no upscaling at all
    empty = generator.generate_result(image)
    assert len(empty) == 0 and empty.masks.shape == (0, 200, 300)
    assert generator.generate_from_boxes(image, np.zeros((0, 4))) == []


@pytest.mark.parametrize(
    "params",
    [
        {"points_per_side": 0},
        {"points_per_side": None},
        {"point_grids": [np.full((4, 2), 0.5)]},
        {"points_per_side": None, "point_grids": [np.full((4, 2), 1.5)]},
        {"points_per_side": None, "point_grids": [np.full((4, 2), 0.5)], "crop_n_layers": 1},
        {"points_per_side": 2, "crop_n_layers": 1, "crop_n_points_downscale_factor": 4},
        {"points_per_batch": 0},
        {"box_nms_thresh": 0.0},
        {"crop_overlap_ratio": 1.0},
        {"output_mode": "png"},
        {"min_mask_region_area": -1},
        {"pred_iou_thresh": float("nan")},
        {"max_box_prompts": 0},
        {"config": EverythingConfig(), "points_per_side": 16},
    ],
)
def test_bad_parameters_raise(models, params: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        MaskGenerator(models[0], **params)


def test_explicit_point_grids(models, image: np.ndarray) -> None:
    grid = np.array([[0.25, 0.25], [0.75, 0.5], [0.5, 0.9]])
    generator = MaskGenerator(
        models[0], points_per_side=None, point_grids=[grid], **LOOSE, box_nms_thresh=1.0
    )
    records = generator.generate(image)
    assert generator.stats.prompts == 3
    assert {tuple(r["point_coords"][0]) for r in records} <= {(75.0, 50.0), (225.0, 100.0), (150.0, 180.0)}


# --- object-aware (box prompt) mode ------------------------------------------------------------------

BOXES = np.array([[10, 10, 120, 90], [150, 40, 290, 190], [60, 100, 200, 195], [0, 0, 300, 200]], float)
KEEP_ALL = {"pred_iou_thresh": 0.0, "stability_score_thresh": 0.0, "box_nms_thresh": 1.0}


def test_boxes_give_one_mask_each_equal_to_the_predictor(models, image: np.ndarray) -> None:
    model = models[0]
    records = MaskGenerator(model, **KEEP_ALL, output_mode="binary_mask").generate_from_boxes(image, BOXES)
    assert len(records) == len(BOXES)
    predictor = SamPredictor(model)
    predictor.set_image(image)
    masks, scores, _ = predictor.predict_boxes(BOXES)
    by_box = {tuple(r["prompt_box"]): r for r in records}
    for box, mask, score in zip(BOXES, masks[:, 0], scores[:, 0], strict=True):
        record = by_box[tuple(box)]
        np.testing.assert_array_equal(record["segmentation"], mask)
        assert record["predicted_iou"] == pytest.approx(float(score), abs=1e-5)
        assert record["point_coords"] == [[(box[0] + box[2]) / 2, (box[1] + box[3]) / 2]]
        assert record["crop_box"] == [0, 0, 300, 200]
    ious = [r["predicted_iou"] for r in records]
    assert ious == sorted(ious, reverse=True)  # suppression orders by predicted IoU


def test_box_batches_equal_single_boxes(models, image: np.ndarray) -> None:
    model = models[0]
    batched = MaskGenerator(model, **KEEP_ALL).generate_from_boxes(image, BOXES)
    single = MaskGenerator(model, **KEEP_ALL, points_per_batch=1).generate_from_boxes(image, BOXES)
    assert [r["prompt_box"] for r in batched] == [r["prompt_box"] for r in single]
    for a, b in zip(batched, single, strict=True):
        np.testing.assert_array_equal(a["segmentation"], b["segmentation"])


def test_box_cap_and_detector_sources(models, image: np.ndarray) -> None:
    model = models[0]
    generator = MaskGenerator(model, **KEEP_ALL, max_box_prompts=2)
    detections = Detections(
        BOXES, scores=np.array([0.1, 0.9, 0.5, 0.2]), phrase_ids=np.zeros(4), phrases=("x",)
    )
    records = generator.generate_from_boxes(image, detections)
    assert generator.stats.prompts == 2
    assert sorted(map(tuple, (r["prompt_box"] for r in records))) == sorted(
        [tuple(BOXES[1]), tuple(BOXES[2])]
    )

    class Finder:
        def detect(self, pixels: np.ndarray, phrases: list[str]) -> Detections:
            assert phrases == ["object"] and pixels.shape == (200, 300, 3)
            return detections

    from_detector = generator.generate_from_boxes(image, detector=Finder())
    from_callable = generator.generate_from_boxes(image, detector=lambda pixels: BOXES[1:3])
    for other in (from_detector, from_callable):
        assert [r["prompt_box"] for r in other] == [r["prompt_box"] for r in records]
    result = generator.generate_result(image, boxes=BOXES[:1])
    assert len(result) == 1 and result.labels == ["object"]


@pytest.mark.parametrize("boxes", [np.zeros((3, 3)), np.array([[0, 0, np.nan, 4]]), "boxes"])
def test_bad_boxes_raise(models, image: np.ndarray, boxes: Any) -> None:
    with pytest.raises(ValueError):
        MaskGenerator(models[0]).generate_from_boxes(image, boxes)


def test_boxes_need_a_source(models, image: np.ndarray) -> None:
    with pytest.raises(ValueError, match="detector"):
        MaskGenerator(models[0]).generate_from_boxes(image)
    with pytest.raises(TypeError, match="detector"):
        MaskGenerator(models[0]).generate_from_boxes(image, detector=42)
