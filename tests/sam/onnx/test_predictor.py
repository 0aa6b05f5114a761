"""OnnxSamPredictor on the exported demo model against SamPredictor; the folder's config, int8 files, YAML."""

from __future__ import annotations

import json
import shutil

import numpy as np
import onnxruntime as ort
import pytest
import torch
import yaml

from grounded_sam.data import SceneConfig, iter_scenes
from grounded_sam.ops.masks import mask_ious
from grounded_sam.pipeline import GroundedSAM, build_predictor
from grounded_sam.sam import OnnxSamPredictor, SamPredictor, build_sam, export_onnx
from grounded_sam.sam.onnx.xanylabeling import RAW_INPUT
from grounded_sam.sam.transforms import normalize_and_pad
from grounded_sam.weights import sha256_of
from tests.pipelines import SCENE, ScriptedDetector
from tests.sam.builders import MALFORMED_PROMPTS

SCENES = list(iter_scenes(31, 3, SceneConfig(size=(180, 240), min_objects=2, max_objects=4)))


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo_onnx")
    export_onnx("demo_sam", out, quantize=True)
    return out


@pytest.fixture(scope="module")
def pair(folder):
    return OnnxSamPredictor(folder, providers=["CPUExecutionProvider"]), SamPredictor(build_sam("demo_sam"))


def assert_same_prediction(ours, expected) -> None:
    """Logits within 1e-5 of their scale and the same masks, pixels at a logit within 1e-3 of the
    threshold aside (float rounding decides those)."""
    (masks, scores, low_res), (ref_masks, ref_scores, ref_low_res) = ours, expected
    assert masks.shape == ref_masks.shape and scores.shape == ref_scores.shape
    assert low_res.shape == ref_low_res.shape
    scale = max(1.0, np.abs(ref_low_res).max())
    assert np.abs(low_res - ref_low_res).max() <= 1e-5 * scale
    assert np.abs(masks - ref_masks).max() <= 1e-5 * scale
    np.testing.assert_allclose(scores, ref_scores, atol=1e-5)
    decided = np.abs(ref_masks) > 1e-3
    assert ((masks > 0) == (ref_masks > 0))[decided].all()


def test_config_lists_every_file_with_its_sha256(folder) -> None:
    config = json.loads((folder / "config.json").read_text())
    assert config["model"] == "demo_sam" and config["image_size"] == 256 and config["embedding_size"] == 32
    assert set(config["files"]) == {
        "encoder",
        "decoder",
        "encoder_int8",
        "decoder_int8",
        "encoder_xanylabeling",
    }
    for entry in config["files"].values():
        assert sha256_of(folder / entry["path"]) == entry["sha256"]
    assert not [p for p in folder.iterdir() if p.name.startswith(".export-")]


def test_embedding_equals_sam_predictor(pair) -> None:
    onnx_predictor, torch_predictor = pair
    for predictor in pair:
        predictor.set_image(SCENES[0].image)
    expected = torch_predictor.get_image_embedding().numpy()
    assert (
        np.abs(onnx_predictor.get_image_embedding().numpy() - expected).max() <= 1e-5 * np.abs(expected).max()
    )
    assert onnx_predictor.original_size == torch_predictor.original_size


@pytest.mark.parametrize("scene", range(len(SCENES)))
def test_box_batches_equal_sam_predictor(pair, scene) -> None:
    for predictor in pair:
        predictor.set_image(SCENES[scene].image)
    boxes = SCENES[scene].boxes
    for multimask in (False, True):
        ours, expected = (p.predict_boxes(boxes, multimask, return_logits=True) for p in pair)
        assert_same_prediction(ours, expected)
    masks, _, _ = pair[0].predict_boxes(boxes)
    assert masks.dtype == bool and masks.shape == (len(boxes), 1, 180, 240)


def test_points_and_mask_input_equal_sam_predictor(pair) -> None:
    for predictor in pair:
        predictor.set_image(SCENES[1].image)
    points = {"point_coords": np.array([[60.0, 40.0], [150.0, 90.0]]), "point_labels": np.array([1, 0])}
    first = [p.predict(**points, return_logits=True) for p in pair]
    assert_same_prediction(*first)
    best = first[1][1].argmax()
    mask_input = first[1][2][best : best + 1]
    again = [
        p.predict(**points, box=np.array([20, 10, 200, 150]), mask_input=mask_input, return_logits=True)
        for p in pair
    ]
    assert_same_prediction(*again)
    single = [p.predict(**points, multimask_output=False, return_logits=True) for p in pair]
    assert_same_prediction(*single)
    assert single[0][0].shape == (1, 180, 240)


def test_no_boxes_gives_empty_arrays(pair) -> None:
    pair[0].set_image(SCENES[0].image)
    masks, scores, low_res = pair[0].predict_boxes(np.zeros((0, 4)))
    assert masks.shape == (0, 1, 180, 240) and scores.shape == (0, 1) and low_res.shape == (0, 1, 128, 128)


@pytest.mark.parametrize(("prompt", "message"), MALFORMED_PROMPTS)
def test_malformed_prompts_are_refused(pair, prompt, message) -> None:
    pair[0].set_image(SCENES[0].image)
    with pytest.raises(ValueError, match=message):
        pair[0].predict(**prompt)


def test_grounded_sam_with_the_onnx_predictor(folder) -> None:
    """The pipeline takes the ONNX predictor (also built from ``onnx:DIR``) and gives SamPredictor's masks."""
    predictor = build_predictor(f"onnx:{folder}")
    assert isinstance(predictor, OnnxSamPredictor)
    phrases = ". ".join(SCENE.labels)
    ours = GroundedSAM(ScriptedDetector(SCENE.boxes, SCENE.labels), predictor).predict(SCENE.image, phrases)
    expected = GroundedSAM(
        ScriptedDetector(SCENE.boxes, SCENE.labels), SamPredictor(build_sam("demo_sam"))
    ).predict(SCENE.image, phrases)
    assert len(ours) == len(expected) == len(SCENE.labels)
    assert ours.labels == expected.labels
    assert mask_ious(ours.masks, expected.masks).min() > 0.999


def test_int8_files_keep_the_masks(folder, pair) -> None:
    """The accuracy recorded at export, and measured again here: mask IoU of int8 against float32."""
    recorded = json.loads((folder / "config.json").read_text())["quantized_accuracy"]
    assert recorded["instances"] > 10
    assert recorded["mask_iou_int8_vs_float32_mean"] >= 0.95
    assert recorded["mask_iou_int8_vs_float32_min"] >= 0.8
    int8 = OnnxSamPredictor(folder, providers=["CPUExecutionProvider"], precision="int8")
    ious = []
    for scene in SCENES:
        masks = []
        for predictor in (pair[0], int8):
            predictor.set_image(scene.image)
            masks.append(predictor.predict_boxes(scene.boxes)[0][:, 0])
        ious.append(mask_ious(masks[1], masks[0]))
    assert np.concatenate(ious).mean() >= 0.95
    assert (folder / "encoder.int8.onnx").stat().st_size < 0.6 * (folder / "encoder.onnx").stat().st_size


def test_single_mask_exports_are_refused_with_a_reason(folder, tmp_path) -> None:
    shutil.copy(folder / "config.json", tmp_path / "config.json")
    config = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**config, "return_single_mask": True}))
    with pytest.raises(ValueError, match="return-single-mask"):
        OnnxSamPredictor(tmp_path)
    with pytest.raises(FileNotFoundError, match="export-onnx"):
        OnnxSamPredictor(tmp_path / "missing")


def test_xanylabeling_yaml_and_raw_pixel_encoder(folder) -> None:
    """The YAML names existing files; its encoder takes (h, w, 3) pixels in 0..255 and pads inside."""
    spec = yaml.safe_load((folder / "xanylabeling.yaml").read_text())
    assert spec["type"] == "segment_anything" and spec["input_size"] == 256
    assert (folder / spec["encoder_model_path"]).is_file() and (folder / spec["decoder_model_path"]).is_file()
    raw = ort.InferenceSession(str(folder / spec["encoder_model_path"]), providers=["CPUExecutionProvider"])
    plain = ort.InferenceSession(str(folder / "encoder.onnx"), providers=["CPUExecutionProvider"])
    pixels = np.random.default_rng(0).uniform(0, 255, (171, 256, 3)).astype(np.float32)
    (embedding,) = raw.run(None, {RAW_INPUT: pixels})
    model = build_sam("demo_sam")
    padded = normalize_and_pad(
        torch.from_numpy(pixels).permute(2, 0, 1)[None], model.pixel_mean, model.pixel_std, 256
    )
    (expected,) = plain.run(None, {"input_image": padded.numpy()})
    assert np.abs(embedding - expected).max() <= 1e-5 * np.abs(expected).max()
