"""build_sam2 / build_sam2_video: folders saved from tiny random models, weights resolution and errors."""

from __future__ import annotations

import json
import shutil
import sys
import types

import numpy as np
import pytest
import torch
from transformers import Sam2Model, Sam2Processor, Sam2VideoModel, Sam2VideoProcessor

from grounded_sam.sam2 import Sam2Predictor, build_sam2, build_sam2_video, is_sam2_folder, uses_sam2
from grounded_sam.sam2.build import default_processor
from grounded_sam.weights import WeightsNotFoundError
from tests.sam2.builders import IMAGE_SIZE, tiny_sam2, tiny_sam2_video

BOXES = np.array([[10, 10, 60, 50], [50, 20, 140, 85.0]])


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    rng = np.random.default_rng(1)
    return np.kron(rng.integers(0, 256, (15, 25, 3), dtype=np.uint8), np.ones((6, 6, 1), np.uint8))


@pytest.fixture(scope="module")
def saved(tmp_path_factory) -> dict[str, object]:
    """Folders written by save_pretrained: image model + processor, image model alone, video model."""
    root = tmp_path_factory.mktemp("sam2")
    model = tiny_sam2(seed=4)
    model.save_pretrained(root / "image")
    default_processor(model).save_pretrained(root / "image")
    model.save_pretrained(root / "bare")
    video = tiny_sam2_video(seed=5)
    video.save_pretrained(root / "video")
    default_processor(video, video=True).save_pretrained(root / "video")
    return {"root": root, "model": model, "video": video}


def decode(model: Sam2Model, processor: Sam2Processor | None, image: np.ndarray) -> tuple[np.ndarray, ...]:
    predictor = Sam2Predictor(model, processor)
    predictor.set_image(image)
    return predictor.predict_boxes(BOXES, multimask_output=True)


def assert_same_outputs(ours: tuple, reference: tuple) -> None:
    np.testing.assert_array_equal(ours[0], reference[0])
    np.testing.assert_allclose(ours[1], reference[1], atol=1e-5, rtol=0)


def test_a_saved_folder_loads_and_gives_equal_outputs(saved, image) -> None:
    model, processor = build_sam2(checkpoint=saved["root"] / "image", device="cpu")
    assert isinstance(model, Sam2Model) and isinstance(processor, Sam2Processor)
    assert not model.training and model.device == torch.device("cpu") and processor.target_size == IMAGE_SIZE
    assert_same_outputs(decode(model, processor, image), decode(saved["model"], None, image))


def test_a_folder_without_processor_files_gets_the_standard_one(saved, image) -> None:
    model, processor = build_sam2(checkpoint=saved["root"] / "bare")
    assert processor.target_size == IMAGE_SIZE and processor.image_processor.size["height"] == IMAGE_SIZE
    assert_same_outputs(decode(model, processor, image), decode(saved["model"], None, image))


def test_sam2_choices_are_told_from_sam1_ones(saved, tmp_path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "sam"}))
    assert is_sam2_folder(saved["root"] / "image") and is_sam2_folder(saved["root"] / "video")
    assert not is_sam2_folder(tmp_path) and not is_sam2_folder(tmp_path / "nowhere")
    assert uses_sam2("sam2.1_hiera_tiny") and uses_sam2(None, saved["root"] / "bare")
    assert not uses_sam2("sam_vit_b") and not uses_sam2(None, tmp_path) and not uses_sam2(None)


def test_registered_names_resolve_through_grounded_sam_home(saved, offline_home, image) -> None:
    shutil.copytree(saved["root"] / "image", offline_home / "sam2.1-hiera-tiny")
    model, _ = build_sam2("sam2.1_hiera_tiny")
    default_model, _ = build_sam2()  # sam2.1_hiera_tiny is the default
    reference = decode(saved["model"], None, image)
    assert_same_outputs(decode(model, None, image), reference)
    assert_same_outputs(decode(default_model, None, image), reference)
    predictor = Sam2Predictor.from_pretrained("sam2.1_hiera_tiny", device="cpu")
    predictor.set_image(image)
    assert_same_outputs(predictor.predict_boxes(BOXES, multimask_output=True), reference)


@pytest.mark.parametrize("builder", [build_sam2, build_sam2_video])
def test_missing_weights_name_the_folder_to_create(offline_home, builder) -> None:
    with pytest.raises(WeightsNotFoundError) as caught:
        builder("sam2.1_hiera_large")
    message = str(caught.value)
    assert "'facebook/sam2.1-hiera-large'" in message and str(offline_home / "sam2.1-hiera-large") in message
    assert "HF_HUB_OFFLINE" in message and "checkpoint=" in message
    with pytest.raises(ValueError, match=r"Did you mean 'sam2.1_hiera_large'"):
        builder("sam2.1_hiera_larg")


def test_the_video_tracker_loads_with_its_processor(saved) -> None:
    model, processor = build_sam2_video(checkpoint=saved["root"] / "video")
    assert isinstance(model, Sam2VideoModel) and isinstance(processor, Sam2VideoProcessor)
    assert not model.training and processor.target_size == IMAGE_SIZE
    expected = saved["video"].state_dict()
    assert all(torch.equal(value, expected[key]) for key, value in model.state_dict().items())


def test_the_image_model_loads_from_a_video_checkpoint(saved) -> None:
    model, processor = build_sam2(checkpoint=saved["root"] / "video")
    video_weights = saved["video"].state_dict()
    image_weights = model.state_dict()
    assert set(image_weights) <= set(video_weights)
    assert all(torch.equal(value, video_weights[key]) for key, value in image_weights.items())
    assert isinstance(processor, Sam2Processor)


def test_an_image_only_folder_cannot_drive_the_video_tracker(saved) -> None:
    with pytest.raises(ValueError, match=r"lacks weights Sam2VideoModel needs.*image-only Sam2Model"):
        build_sam2_video(checkpoint=saved["root"] / "image")


def test_a_processor_of_another_size_is_refused(saved, tmp_path) -> None:
    folder = tmp_path / "mismatch"
    shutil.copytree(saved["root"] / "bare", folder)
    processor = default_processor(saved["model"])
    processor.image_processor.size = {"height": 1024, "width": 1024}
    Sam2Processor(image_processor=processor.image_processor).save_pretrained(folder)
    with pytest.raises(ValueError, match=r"resizes images to \(1024, 1024\).*128x128"):
        build_sam2(checkpoint=folder)


def test_checkpoints_that_are_not_sam2_folders_are_refused(saved, tmp_path) -> None:
    weights_file = saved["root"] / "image" / "model.safetensors"
    with pytest.raises(ValueError, match=r"folders .*official \.pt"):
        build_sam2(checkpoint=weights_file)
    with pytest.raises(WeightsNotFoundError, match="not found at"):
        build_sam2(checkpoint=tmp_path / "nowhere")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(WeightsNotFoundError, match=r"no config\.json"):
        build_sam2(checkpoint=empty)
    sam1 = tmp_path / "sam1"
    sam1.mkdir()
    (sam1 / "config.json").write_text(json.dumps({"model_type": "sam"}))
    with pytest.raises(ValueError, match=r"holds a 'sam' model, not SAM 2.*build_sam"):
        build_sam2(checkpoint=sam1)
    no_weights = tmp_path / "no_weights"
    no_weights.mkdir()
    shutil.copy(saved["root"] / "image" / "config.json", no_weights)
    with pytest.raises(WeightsNotFoundError, match="no readable weights"):
        build_sam2(checkpoint=no_weights)


def test_a_transformers_without_sam2_is_a_clear_import_error(saved, monkeypatch) -> None:
    old = types.ModuleType("transformers")
    old.__version__ = "4.45.0"
    monkeypatch.setitem(sys.modules, "transformers", old)
    for call in (
        lambda: build_sam2(checkpoint=saved["root"] / "image"),
        lambda: build_sam2_video(checkpoint=saved["root"] / "video"),
        lambda: Sam2Predictor(saved["model"]),
    ):
        with pytest.raises(ImportError, match=r"transformers \(4.45.0\) has no Sam2.*transformers>=4.56"):
            call()


def test_the_pipeline_builds_a_sam2_predictor_for_sam2_folders_and_names(saved, offline_home, image) -> None:
    from grounded_sam.pipeline import build_predictor
    from grounded_sam.sam import SamPredictor, build_sam

    predictor = build_predictor(None, saved["root"] / "image", device="cpu")
    assert isinstance(predictor, Sam2Predictor)
    predictor.set_image(image)
    assert_same_outputs(
        predictor.predict_boxes(BOXES, multimask_output=True), decode(saved["model"], None, image)
    )
    shutil.copytree(saved["root"] / "image", offline_home / "sam2.1-hiera-tiny")
    assert isinstance(build_predictor("sam2.1_hiera_tiny", device="cpu"), Sam2Predictor)
    ours = offline_home / "ours.pth"
    torch.save(build_sam("demo_sam", device="cpu").state_dict(), ours)
    assert isinstance(build_predictor(None, ours, device="cpu"), SamPredictor)
