"""Sam3Segmenter on a tiny random transformers SAM 3: loading, parity with transformers, thresholds."""

from __future__ import annotations

import shutil
import socket

import numpy as np
import pytest
import torch
from torchvision.ops import box_iou

from grounded_sam.text.base import Detector, TextSegmenter
from grounded_sam.text.registry import build_detector, get_detector_spec, list_detectors
from grounded_sam.text.sam3 import Sam3Segmenter, is_sam3_folder, sam3_classes
from grounded_sam.weights import WeightsNotFoundError
from tests.text.sam3_builders import save_tiny_sam3

IMAGE = np.random.default_rng(0).integers(0, 256, (40, 60, 3), dtype=np.uint8)
PHRASES = ["cat", "dog", "red car"]
MEDIAN_SCORE = 0.25  # the tiny model's 30 instance scores spread over about 0.07 .. 0.43


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return save_tiny_sam3(tmp_path_factory.mktemp("sam3-tiny-random"))


@pytest.fixture(scope="module")
def segmenter(folder):
    """Loaded with the network switched off: every file must come from the folder."""

    def no_network(*args, **kwargs):
        raise OSError("network access during loading")

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HF_HUB_OFFLINE", "1")
        patch.setattr(socket.socket, "connect", no_network)
        return Sam3Segmenter.from_pretrained(folder, device="cpu")


def reference(segmenter, phrases, threshold: float, mask_threshold: float = 0.5):
    """transformers' own route: processor → Sam3Model → post_process_instance_segmentation, per phrase.

    Returns boxes (clipped to the image, as ours are), scores, phrase ids and masks, best score first.
    """
    parts = []
    for index, phrase in enumerate(phrases):
        inputs = segmenter.processor(images=IMAGE, text=phrase, return_tensors="pt")
        with torch.inference_mode():
            outputs = segmenter.model(**inputs)
        (found,) = segmenter.processor.post_process_instance_segmentation(
            outputs, threshold=threshold, mask_threshold=mask_threshold, target_sizes=[IMAGE.shape[:2]]
        )
        parts.append(
            (found["boxes"], found["scores"], torch.full_like(found["scores"], index), found["masks"])
        )
    boxes, scores, ids, masks = (torch.cat(column) for column in zip(*parts, strict=True))
    order = scores.argsort(descending=True)
    height, width = IMAGE.shape[:2]
    boxes[:, 0::2] = boxes[:, 0::2].clamp(0, width)
    boxes[:, 1::2] = boxes[:, 1::2].clamp(0, height)
    return boxes[order].numpy(), scores[order].numpy(), ids[order].long().numpy(), masks[order].bool().numpy()


def test_loads_offline_and_speaks_both_protocols(segmenter) -> None:
    assert isinstance(segmenter, TextSegmenter) and isinstance(segmenter, Detector)
    assert segmenter.device == torch.device("cpu") and not segmenter.model.training
    settings = (
        segmenter.box_threshold,
        segmenter.mask_threshold,
        segmenter.max_boxes,
        segmenter.nms_threshold,
    )
    assert settings == (0.5, 0.5, 100, None)
    assert segmenter.max_text_tokens == 32


@pytest.mark.parametrize("phrase_batch", [1, 2, 4])
def test_equals_transformers_model_and_post_processing(segmenter, monkeypatch, phrase_batch) -> None:
    monkeypatch.setattr(segmenter, "phrase_batch", phrase_batch)
    found = segmenter.segment(IMAGE, PHRASES, box_threshold=MEDIAN_SCORE)
    boxes, scores, ids, masks = reference(segmenter, PHRASES, MEDIAN_SCORE)
    assert 0 < len(found) < 30 and len(found) == len(scores)
    np.testing.assert_allclose(found.detections.scores, scores, rtol=0, atol=1e-6)
    np.testing.assert_array_equal(found.detections.phrase_ids, ids)
    np.testing.assert_allclose(found.detections.boxes, boxes, rtol=0, atol=1e-4)
    assert found.masks.shape == (len(scores), 40, 60) and found.masks.dtype == bool
    differing = (found.masks != masks).mean()
    # One phrase per forward is the reference's own computation; batched phrases differ by float rounding.
    assert differing == 0 if phrase_batch == 1 else differing < 1e-3
    np.testing.assert_array_equal(found.mask_scores, found.detections.scores)


def test_the_image_is_encoded_once_for_all_phrases(segmenter, monkeypatch) -> None:
    calls = {"encode": 0, "decode": []}
    encode, decode = segmenter.model.get_vision_features, segmenter.decode

    def counting_encode(*args, **kwargs):
        calls["encode"] += 1
        return encode(*args, **kwargs)

    def counting_decode(vision, texts):
        calls["decode"].append(list(texts))
        return decode(vision, texts)

    monkeypatch.setattr(segmenter.model, "get_vision_features", counting_encode)
    monkeypatch.setattr(segmenter, "decode", counting_decode)
    monkeypatch.setattr(segmenter, "phrase_batch", 2)
    segmenter.segment(IMAGE, PHRASES, box_threshold=0.0)
    assert calls == {"encode": 1, "decode": [["cat", "dog"], ["red car"]]}


def test_raising_the_threshold_removes_objects(segmenter) -> None:
    counts = []
    everything = segmenter.detect(IMAGE, PHRASES, box_threshold=0.0)
    assert len(everything) == 30  # 10 queries × 3 phrases
    for threshold in (0.0, 0.15, MEDIAN_SCORE, 0.35, 1.0):
        found = segmenter.segment(IMAGE, PHRASES, box_threshold=threshold)
        assert (found.detections.scores > threshold).all()
        assert len(found) == (everything.scores > threshold).sum()
        counts.append(len(found))
    assert counts == sorted(counts, reverse=True) and counts[0] > counts[2] > counts[-1] == 0


def test_mask_threshold_matches_the_reference_and_shrinks_masks(folder) -> None:
    loose = Sam3Segmenter.from_pretrained(folder, device="cpu", mask_threshold=0.3, phrase_batch=1)
    strict = Sam3Segmenter.from_pretrained(folder, device="cpu", mask_threshold=0.6, phrase_batch=1)
    wide, narrow = (s.segment(IMAGE, ["cat"], box_threshold=0.0).masks for s in (loose, strict))
    np.testing.assert_array_equal(wide, reference(loose, ["cat"], 0.0, mask_threshold=0.3)[3])
    assert (wide | narrow).sum() == wide.sum() and narrow.sum() < wide.sum()


def test_labels_are_the_users_phrases(segmenter) -> None:
    found = segmenter.segment(IMAGE, "Cat. red  car", box_threshold=0.0)
    assert found.detections.phrases == ("cat", "red car")
    assert set(found.detections.labels) == {"cat", "red car"} and len(found) == 20
    listed = segmenter.detect(IMAGE, ["Cat", "dog"], box_threshold=MEDIAN_SCORE)
    assert listed.phrases == ("Cat", "dog") and set(listed.labels) <= {"Cat", "dog"}


@pytest.mark.parametrize("phrases", [[], "", " . , "])
def test_no_phrase_gives_empty_results_of_the_right_shape(segmenter, phrases) -> None:
    found = segmenter.segment(IMAGE, phrases)
    assert len(found) == 0 and found.masks.shape == (0, 40, 60) and found.detections.boxes.shape == (0, 4)
    assert len(segmenter.detect(IMAGE, phrases)) == 0


def test_nothing_above_the_threshold_gives_empty_results(segmenter) -> None:
    found = segmenter.segment(IMAGE, PHRASES)  # the default 0.5 is far above the random model's scores
    assert len(found) == 0 and found.masks.shape == (0, 40, 60) and found.detections.phrases == tuple(PHRASES)


def test_detect_gives_the_boxes_of_segment(segmenter) -> None:
    found = segmenter.segment(IMAGE, PHRASES, box_threshold=MEDIAN_SCORE)
    boxes = segmenter.detect(IMAGE, PHRASES, box_threshold=MEDIAN_SCORE)
    np.testing.assert_array_equal(boxes.boxes, found.detections.boxes)
    np.testing.assert_array_equal(boxes.phrase_ids, found.detections.phrase_ids)


def test_max_boxes_keeps_the_best_and_nms_works_per_phrase(folder, segmenter) -> None:
    everything = segmenter.detect(IMAGE, PHRASES, box_threshold=0.0)
    capped = Sam3Segmenter.from_pretrained(folder, max_boxes=4).detect(IMAGE, PHRASES, box_threshold=0.0)
    np.testing.assert_allclose(capped.scores, everything.scores[:4])
    suppressed = Sam3Segmenter.from_pretrained(folder, nms_threshold=0.5).detect(
        IMAGE, PHRASES, box_threshold=0.0
    )
    assert 3 <= len(suppressed) < len(everything)
    for phrase in range(3):
        boxes = torch.from_numpy(suppressed.boxes[suppressed.phrase_ids == phrase])
        iou = torch.triu(box_iou(boxes, boxes), diagonal=1)
        assert len(boxes) >= 1 and (iou <= 0.5).all()


def test_pil_images_and_bad_input_are_handled(segmenter) -> None:
    from PIL import Image

    found = segmenter.detect(Image.fromarray(IMAGE), ["cat"], box_threshold=0.0)
    np.testing.assert_array_equal(found.boxes, segmenter.detect(IMAGE, ["cat"], box_threshold=0.0).boxes)
    with pytest.raises(ValueError, match="box_threshold"):
        segmenter.segment(IMAGE, ["cat"], box_threshold=1.5)
    with pytest.raises(TypeError, match="phrase 1 must be a string"):
        segmenter.segment(IMAGE, ["cat", 3])
    with pytest.raises(ValueError, match=r"phrase 0 .* has nothing to look for"):
        segmenter.segment(IMAGE, ["  "])
    with pytest.raises(ValueError, match="max_boxes"):
        Sam3Segmenter(segmenter.model, segmenter.processor, max_boxes=0)


def test_registry_builds_sam3_and_explains_the_gated_weights(offline_home, folder) -> None:
    spec = get_detector_spec("sam3")
    assert (
        "sam3" in list_detectors() and spec.segments and not get_detector_spec("grounding_dino_tiny").segments
    )
    assert get_detector_spec("facebook/sam3") is spec and spec.weights.is_snapshot
    with pytest.raises(WeightsNotFoundError) as info:
        build_detector("sam3")
    message = str(info.value)
    for needed in (
        "gated",
        "huggingface.co/facebook/sam3",
        "hf auth login",
        str(offline_home / "sam3"),
    ):
        assert needed in message
    built = build_detector("sam3", checkpoint=folder, device="cpu", box_threshold=0.3, phrase_batch=2)
    assert isinstance(built, Sam3Segmenter) and (built.box_threshold, built.phrase_batch) == (0.3, 2)
    shutil.copytree(folder, offline_home / "sam3")
    assert build_detector("sam3", device="cpu").model.config.detr_decoder_config.num_queries == 10
    assert Sam3Segmenter.from_pretrained("facebook/sam3").max_boxes == 100


def test_incomplete_folders_and_old_transformers_are_explained(tmp_path, monkeypatch, folder) -> None:
    assert is_sam3_folder(folder) and not is_sam3_folder(tmp_path)
    with pytest.raises(WeightsNotFoundError, match="not a complete SAM 3 folder"):
        Sam3Segmenter.from_pretrained(tmp_path)
    import transformers

    monkeypatch.setattr(transformers, "Sam3Model", None, raising=False)
    with pytest.raises(ImportError, match=r"transformers >= 5\.0"):
        sam3_classes()


def test_boxes_are_scaled_to_pixels_and_clipped_to_the_image(segmenter, monkeypatch) -> None:
    """SAM 3's normalised XYXY boxes may reach past the image edge; ours stop at it."""
    scores = torch.tensor([[0.9, 0.2, 0.6]])
    boxes = torch.tensor([[[-0.1, 0.2, 1.3, 0.9], [0.1, 0.1, 0.2, 0.2], [0.25, 0.5, 0.5, 1.0]]])
    logits = torch.full((1, 3, 16, 16), 4.0)
    monkeypatch.setattr(segmenter, "decode", lambda vision, texts: (scores, boxes, logits))
    found = segmenter.segment(IMAGE, ["cat"], box_threshold=0.5)
    np.testing.assert_allclose(found.detections.boxes, [[0, 8, 60, 36], [15, 20, 30, 40]], atol=1e-5)
    np.testing.assert_allclose(found.detections.scores, [0.9, 0.6])
    assert found.masks.shape == (2, 40, 60) and found.masks.all()
