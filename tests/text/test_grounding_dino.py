"""GroundingDinoDetector on a tiny random transformers model: loading, parity with transformers, prompts."""

from __future__ import annotations

import socket

import numpy as np
import pytest
import torch
from PIL import Image

from grounded_sam.text.base import Detector
from grounded_sam.text.grounding_dino import GroundingDinoDetector, reference_post_process
from grounded_sam.text.phrase_mapping import decode_queries
from grounded_sam.weights import WeightsNotFoundError
from tests.text.gdino_builders import save_tiny_grounding_dino

IMAGE = np.random.default_rng(0).integers(0, 256, (48, 72, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return save_tiny_grounding_dino(tmp_path_factory.mktemp("grounding-dino-tiny-random"))


@pytest.fixture(scope="module")
def detector(folder):
    """Loaded with the network switched off: every file must come from the folder."""

    def no_network(*args, **kwargs):
        raise OSError("network access during loading")

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HF_HUB_OFFLINE", "1")
        patch.setattr(socket.socket, "connect", no_network)
        loaded = GroundingDinoDetector.from_pretrained(
            folder, device="cpu", nms_threshold=None, max_boxes=1000
        )
    torch.manual_seed(0)
    return loaded


def record_forwards(detector, monkeypatch) -> list[tuple[int, ...]]:
    """The prompts ``detector`` sends to its model from now on."""
    calls: list[tuple[int, ...]] = []
    original = detector.forward

    def recording(pixels, input_ids):
        calls.append(tuple(input_ids))
        return original(pixels, input_ids)

    monkeypatch.setattr(detector, "forward", recording)
    return calls


@pytest.fixture
def count_forwards(detector, monkeypatch):
    return record_forwards(detector, monkeypatch)


def test_loads_model_and_processor_from_one_folder(detector) -> None:
    assert isinstance(detector, Detector)
    assert detector.device == torch.device("cpu") and not detector.model.training
    assert detector.special_ids == (101, 102, 1012)
    assert detector.max_text_tokens == 256
    assert (detector.box_threshold, detector.text_threshold, detector.max_boxes) == (0.3, 0.25, 1000)


def test_prompt_ids_equal_the_processors_tokenisation(detector) -> None:
    (chunk,) = detector.prompt_chunks(["Cat", "traffic light", "hydrant"])
    expected = detector.processor.tokenizer("cat. traffic light. hydrant.")["input_ids"]
    assert list(chunk.input_ids) == list(expected)
    assert chunk.spans == ((1, 2), (3, 5), (6, 9))


def _reference_outputs(detector, text: str):
    inputs = detector.processor(images=IMAGE, text=text, return_tensors="pt")
    with torch.inference_mode():
        return inputs, detector.model(**inputs)


def test_post_processing_matches_transformers(detector) -> None:
    inputs, outputs = _reference_outputs(detector, "cat. traffic light.")
    scores = outputs.logits[0].sigmoid().amax(dim=1)
    box_threshold = scores.median().item()  # about half the queries pass
    (chunk,) = detector.prompt_chunks(["cat", "traffic light"])
    ours = decode_queries(
        outputs.logits[0],
        outputs.pred_boxes[0],
        chunk,
        IMAGE.shape[:2],
        box_threshold=box_threshold,
        text_threshold=0.0,
    )
    theirs = reference_post_process(
        detector.processor,
        outputs,
        inputs["input_ids"],
        IMAGE.shape[:2],
        box_threshold=box_threshold,
        text_threshold=0.0,
    )
    assert 0 < len(ours.scores) < len(scores)
    torch.testing.assert_close(ours.scores, theirs["scores"])
    # transformers leaves boxes unclipped; ours stay inside the image.
    limits = torch.tensor([IMAGE.shape[1], IMAGE.shape[0]] * 2, dtype=torch.float32)
    torch.testing.assert_close(ours.boxes, theirs["boxes"].clamp(min=0).minimum(limits))

    strict = decode_queries(
        outputs.logits[0],
        outputs.pred_boxes[0],
        chunk,
        IMAGE.shape[:2],
        box_threshold=box_threshold,
        text_threshold=0.9,
    )
    assert set(strict.scores.tolist()) <= set(ours.scores.tolist())


def test_detect_matches_transformers_end_to_end(detector) -> None:
    inputs, outputs = _reference_outputs(detector, "cat. traffic light.")
    box_threshold = outputs.logits[0].sigmoid().amax(dim=1).median().item()
    found = detector.detect(IMAGE, ["cat", "traffic light"], box_threshold=box_threshold, text_threshold=0.0)
    theirs = reference_post_process(
        detector.processor,
        outputs,
        inputs["input_ids"],
        IMAGE.shape[:2],
        box_threshold=box_threshold,
        text_threshold=0.0,
    )
    order = theirs["scores"].argsort(descending=True)
    np.testing.assert_allclose(found.scores, theirs["scores"][order].numpy(), rtol=1e-5)
    assert found.boxes.dtype == np.float32 and found.phrase_ids.dtype == np.int64
    assert found.phrases == ("cat", "traffic light") and set(found.phrase_ids) <= {0, 1}
    assert np.all(np.diff(found.scores) <= 0)


def test_reference_adapter_speaks_the_old_threshold_name() -> None:
    class OldProcessor:
        def post_process_grounded_object_detection(
            self, outputs, input_ids=None, box_threshold=0.25, text_threshold=0.25, target_sizes=None
        ):
            return [{"box_threshold": box_threshold, "target_sizes": target_sizes}]

    result = reference_post_process(OldProcessor(), None, None, (5, 7), box_threshold=0.4, text_threshold=0.2)
    assert result == {"box_threshold": 0.4, "target_sizes": [(5, 7)]}


def test_long_class_lists_are_chunked_with_global_ids(detector, count_forwards) -> None:
    phrases = [f"class{i}" for i in range(60)]  # 7 word pieces each: 60 × 8 tokens need two prompts
    found = detector.detect(IMAGE, phrases, box_threshold=0.0, text_threshold=0.0)
    assert len(count_forwards) == 2 and all(len(ids) <= 256 for ids in count_forwards)
    assert found.phrases == tuple(phrases)
    # Every query passes zero thresholds and gets one phrase of its own prompt.
    assert len(found) == 2 * detector.model.config.num_queries
    assert found.phrase_ids.min() >= 0 and found.phrase_ids.max() < 60
    assert found.phrase_ids.max() >= 31  # some boxes come from the second prompt


def test_per_class_runs_one_prompt_per_phrase(detector, monkeypatch) -> None:
    single = GroundingDinoDetector(detector.model, detector.processor, per_class=True)
    calls = record_forwards(single, monkeypatch)
    found = single.detect(IMAGE, ["cat", "traffic light", "dog"], box_threshold=0.0, text_threshold=0.0)
    assert calls == [(101, 200, 1012, 102), (101, 202, 203, 1012, 102), (101, 201, 1012, 102)]
    assert len(found) <= single.max_boxes and set(found.phrase_ids) <= {0, 1, 2}


def test_empty_prompts_do_not_call_the_model(detector, count_forwards) -> None:
    for prompt in ("", "  ", ". , ;", []):
        found = detector.detect(IMAGE, prompt)
        assert len(found) == 0 and found.boxes.shape == (0, 4)
    assert count_forwards == []


@pytest.mark.parametrize(
    "prompt", ["🐱 cat. 猫", "CAT.dog..cat", "x" * 2000, ["very " * 400 + "long"], ["a", "a", "b"]]
)
def test_odd_prompts_run_and_give_valid_ids(detector, prompt) -> None:
    found = detector.detect(IMAGE, prompt, box_threshold=0.0, text_threshold=0.0)
    assert found.boxes.shape == (len(found), 4) and len(found) > 0
    assert found.phrase_ids.max() < len(found.phrases)
    assert (
        np.all(found.boxes[:, :2] >= 0)
        and np.all(found.boxes[:, 2] <= 72)
        and np.all(found.boxes[:, 3] <= 48)
    )


def test_cap_and_pil_input(detector) -> None:
    capped = GroundingDinoDetector(detector.model, detector.processor, max_boxes=3, nms_threshold=0.5)
    found = capped.detect(Image.fromarray(IMAGE), "cat. dog", box_threshold=0.0, text_threshold=0.0)
    assert len(found) == 3


@pytest.mark.parametrize("name", ["box_threshold", "text_threshold"])
@pytest.mark.parametrize("value", [-0.1, 1.5, "0.3", float("nan")])
def test_thresholds_are_validated(detector, name, value) -> None:
    with pytest.raises(ValueError, match=name):
        GroundingDinoDetector(detector.model, detector.processor, **{name: value})
    with pytest.raises(ValueError, match=name):
        detector.detect(IMAGE, "cat", **{name: value})


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"max_boxes": 0}, "max_boxes"),
        ({"nms_threshold": 2.0}, "nms_threshold"),
        ({"phrase_score": "sum"}, "phrase_score"),
    ],
)
def test_other_settings_are_validated(detector, options, message) -> None:
    with pytest.raises(ValueError, match=message):
        GroundingDinoDetector(detector.model, detector.processor, **options)


def test_bad_inputs_are_clear_errors(detector) -> None:
    with pytest.raises(ValueError, match=r"phrase 1 \(' \. '\) has nothing to look for"):
        detector.detect(IMAGE, ["cat", " . "])
    with pytest.raises(TypeError, match="phrase 0 must be a string"):
        detector.detect(IMAGE, [3])
    with pytest.raises(ValueError, match=r"\(H, W, 3\) uint8"):
        detector.detect(IMAGE[..., 0], "cat")
    with pytest.raises(TypeError, match="numpy array or a PIL image"):
        detector.detect("image.png", "cat")


def test_incomplete_folder_and_unknown_names(tmp_path, folder) -> None:
    (tmp_path / "config.json").write_text((folder / "config.json").read_text())
    with pytest.raises(WeightsNotFoundError, match="not a complete Grounding DINO folder"):
        GroundingDinoDetector.from_pretrained(tmp_path)
    with pytest.raises(WeightsNotFoundError, match="neither a folder nor a Hugging Face repo id"):
        GroundingDinoDetector.from_pretrained("no_such_model")
