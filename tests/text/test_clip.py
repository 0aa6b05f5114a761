"""Tests for grounded_sam.text.clip: text embeddings, labels, thresholds, loading, and a semantic check."""

from __future__ import annotations

import math

import numpy as np
import open_clip
import pytest
import torch
from torch import nn

from grounded_sam.text.base import NO_LABEL, Labeler, Labels
from grounded_sam.text.clip import CLIP_MODELS, ClipLabeler, build_clip_labeler, list_clip_models
from grounded_sam.text.crops import ClipInput
from grounded_sam.weights import WeightsNotFoundError

TINY_CLIP = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 32, "patch_size": 16, "head_width": 16},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 2},
}
CLASSES = ["cat", "dog", "traffic light"]


def _tiny_model(seed: int = 0) -> open_clip.CLIP:
    torch.manual_seed(seed)
    return open_clip.CLIP(**TINY_CLIP).eval()


def _labeler(model: nn.Module | None = None, **options) -> ClipLabeler:
    model = model if model is not None else _tiny_model()
    return ClipLabeler(model, open_clip.SimpleTokenizer(context_length=16), device="cpu", **options)


def _scene() -> tuple[np.ndarray, np.ndarray]:
    """A random 48x64 image and 5 masks: two blobs, an empty mask, one pixel, and the whole image."""
    image = np.random.default_rng(0).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    masks = np.zeros((5, 48, 64), dtype=bool)
    masks[0, 5:20, 5:30] = True
    masks[1, 30:, 40:] = True
    masks[3, 47, 0] = True
    masks[4] = True
    return image, masks


def test_is_a_labeler_and_reads_the_input_from_the_model() -> None:
    labeler = _labeler()
    assert isinstance(labeler, Labeler)
    assert labeler.clip_input == ClipInput(32, open_clip.OPENAI_DATASET_MEAN, open_clip.OPENAI_DATASET_STD)


def test_text_embeddings_average_normalised_templates() -> None:
    model = _tiny_model()
    templates = ("a photo of a {}.", "a drawing of a {}.")
    labeler = _labeler(model, templates=templates)
    embeddings = labeler.text_embeddings(CLASSES)
    assert embeddings.shape == (3, 32) and embeddings.dtype == torch.float32
    torch.testing.assert_close(embeddings.norm(dim=-1), torch.ones(3))
    tokenizer = open_clip.SimpleTokenizer(context_length=16)
    with torch.no_grad():
        for row, name in zip(embeddings, CLASSES, strict=True):
            prompts = model.encode_text(tokenizer([t.format(name) for t in templates]), normalize=True)
            expected = prompts.mean(dim=0)
            torch.testing.assert_close(row, expected / expected.norm(), rtol=1e-5, atol=1e-5)


def test_text_embeddings_are_cached_per_class_list(monkeypatch: pytest.MonkeyPatch) -> None:
    model = _tiny_model()
    labeler = _labeler(model, text_cache_size=2)
    calls = []
    encode = model.encode_text

    def counting(tokens: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        calls.append(len(tokens))
        return encode(tokens, *args, **kwargs)

    monkeypatch.setattr(model, "encode_text", counting)
    first = labeler.text_embeddings(CLASSES)
    assert calls == [3 * len(labeler.templates)]
    assert labeler.text_embeddings(list(CLASSES)) is first  # a list and a tuple share the entry
    assert len(calls) == 1
    labeler.label(*_scene(), CLASSES)
    assert len(calls) == 1
    labeler.text_embeddings(["cat"])
    labeler.text_embeddings(["dog"])  # evicts CLASSES (least recently used of two)
    labeler.text_embeddings(["cat"])
    assert len(calls) == 3
    labeler.text_embeddings(CLASSES)
    assert len(calls) == 4


def test_label_shapes_types_and_empty_masks() -> None:
    image, masks = _scene()
    labels = _labeler().label(image, masks, CLASSES)
    assert isinstance(labels, Labels) and labels.classes == tuple(CLASSES)
    assert labels.class_ids.shape == (5,) and labels.class_ids.dtype == np.int64
    assert labels.scores.shape == (5,) and labels.scores.dtype == np.float32
    assert labels.class_ids[2] == -1 and labels.scores[2] == 0.0 and labels.names[2] == NO_LABEL
    others = np.array([0, 1, 3, 4])
    assert np.all((labels.class_ids[others] >= 0) & (labels.class_ids[others] < 3))
    # With three classes the best softmax probability is in [1/3, 1].
    assert np.all((labels.scores[others] >= 1 / 3 - 1e-6) & (labels.scores[others] <= 1))
    # Every class's probability: rows sum to one, their best is the score; the empty mask's row is zero.
    probabilities = labels.probabilities
    assert probabilities.shape == (5, 3) and probabilities.dtype == np.float32
    np.testing.assert_allclose(probabilities[others].sum(axis=1), 1.0, rtol=1e-5)
    np.testing.assert_array_equal(probabilities[others].max(axis=1), labels.scores[others])
    np.testing.assert_array_equal(probabilities[others].argmax(axis=1), labels.class_ids[others])
    assert not probabilities[2].any()


def test_no_masks_give_empty_labels() -> None:
    image, _ = _scene()
    labels = _labeler().label(image, np.zeros((0, 48, 64), dtype=bool), CLASSES)
    assert labels.class_ids.shape == (0,) and labels.class_ids.dtype == np.int64
    assert labels.scores.shape == (0,) and labels.scores.dtype == np.float32
    assert labels.classes == tuple(CLASSES) and labels.names == []


def test_results_are_deterministic_and_independent_of_batch_size() -> None:
    image, masks = _scene()
    one_by_one = _labeler(batch_size=1).label(image, masks, CLASSES)
    batched = _labeler(batch_size=32).label(image, masks, CLASSES)
    again = _labeler(batch_size=32).label(image, masks, CLASSES)
    np.testing.assert_array_equal(batched.class_ids, again.class_ids)
    np.testing.assert_array_equal(batched.scores, again.scores)
    np.testing.assert_array_equal(batched.class_ids, one_by_one.class_ids)
    np.testing.assert_allclose(batched.scores, one_by_one.scores, rtol=1e-5)


def test_threshold_turns_unsure_regions_into_no_label() -> None:
    image, masks = _scene()
    model = _tiny_model()
    free = _labeler(model).label(image, masks, CLASSES)
    filled = free.class_ids >= 0
    threshold = float(np.median(free.scores[filled]))
    strict = _labeler(model, threshold=threshold).label(image, masks, CLASSES)
    np.testing.assert_array_equal(strict.scores, free.scores)  # scores stay the top probability
    confident = free.scores >= threshold
    assert confident[filled].any() and not confident[filled].all()
    np.testing.assert_array_equal(strict.class_ids, np.where(confident, free.class_ids, -1))


def test_label_boxes_matches_shapes_and_skips_boxes_outside_the_image() -> None:
    image, _ = _scene()
    boxes = np.array([[5, 5, 30, 20], [100, 100, 120, 120], [0, 0, 64, 48]], dtype=np.float32)
    labels = _labeler().label_boxes(image, boxes, CLASSES)
    assert labels.class_ids.shape == (3,) and labels.class_ids[1] == -1 and labels.scores[1] == 0
    assert labels.class_ids[0] >= 0 and labels.class_ids[2] >= 0
    assert _labeler().label_boxes(image, np.zeros((0, 4)), CLASSES).class_ids.shape == (0,)


def test_bad_inputs_raise_clear_errors() -> None:
    image, masks = _scene()
    labeler = _labeler()
    with pytest.raises(ValueError, match="classes is empty"):
        labeler.label(image, masks, [])
    with pytest.raises(TypeError, match="not one string"):
        labeler.label(image, masks, "cat")
    with pytest.raises(ValueError, match=r"masks must have shape \(N, 48, 64\)"):
        labeler.label(image, masks[:, :10], CLASSES)
    with pytest.raises(ValueError, match="uint8"):
        labeler.label(image.astype(np.float32), masks, CLASSES)
    with pytest.raises(ValueError, match="boxes"):
        labeler.label_boxes(image, np.zeros((2, 3)), CLASSES)
    with pytest.raises(ValueError, match="threshold"):
        _labeler(threshold=1.5)
    with pytest.raises(ValueError, match="templates"):
        _labeler(templates=["no placeholder"])


def test_rotations_average_the_labels_of_the_turned_scene() -> None:
    image, masks = _scene()
    turned = _labeler(rotations=4).label(image, masks, CLASSES).probabilities
    views = [
        _labeler().label(np.rot90(image, -k).copy(), np.rot90(masks, -k, axes=(1, 2)).copy(), CLASSES)
        for k in range(4)
    ]
    filled = masks.any(axis=(1, 2))
    expected = np.mean([view.probabilities for view in views], axis=0)
    np.testing.assert_allclose(turned[filled], expected[filled], atol=1e-5)
    assert not np.allclose(turned[filled], views[0].probabilities[filled], atol=1e-3)  # not one view
    half = _labeler(rotations=2).label(image, masks, CLASSES).probabilities
    np.testing.assert_allclose(
        half[filled], np.mean([views[0].probabilities, views[2].probabilities], 0)[filled], atol=1e-5
    )


@pytest.mark.parametrize("rotations", [0, 3, 8])
def test_rotations_are_quarter_turn_counts(rotations: int) -> None:
    with pytest.raises(ValueError, match="rotations must be 1, 2 or 4"):
        _labeler(rotations=rotations)


def test_four_rotations_need_a_square_input() -> None:
    wide = ClipInput((32, 48), open_clip.OPENAI_DATASET_MEAN, open_clip.OPENAI_DATASET_STD)
    with pytest.raises(ValueError, match="square"):
        ClipLabeler(_tiny_model(), open_clip.SimpleTokenizer(context_length=16), wide, "cpu", rotations=4)


# A model whose towers are simple functions of colour, to prove crops, masking, batching and argmax.
COLOURS = {
    "red": (1, 0, 0),
    "green": (0, 1, 0),
    "blue": (0, 0, 1),
    "yellow": (1, 1, 0),
    "cyan": (0, 1, 1),
    "magenta": (1, 0, 1),
}
NAMES = list(COLOURS)
COLOUR_INPUT = ClipInput(24, (0.3, 0.4, 0.5), (0.5, 0.5, 0.5))


class ColourTokenizer:
    """Token = index of the colour named in the prompt."""

    def __call__(self, texts: list[str]) -> torch.Tensor:
        return torch.tensor([[next(i for i, name in enumerate(NAMES) if name in text)] for text in texts])


class ColourClip(nn.Module):
    """Image embedding: mean colour of the non-neutral crop pixels; text embedding: the named colour."""

    def __init__(self) -> None:
        super().__init__()
        self.logit_scale = nn.Parameter(torch.tensor(math.log(100.0)))
        self.register_buffer("table", torch.tensor(list(COLOURS.values()), dtype=torch.float32) - 0.5)

    def encode_text(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.table[tokens[:, 0]]

    def encode_image(self, crops: torch.Tensor) -> torch.Tensor:
        std = torch.tensor(COLOUR_INPUT.std).view(1, 3, 1, 1)
        mean = torch.tensor(COLOUR_INPUT.mean).view(1, 3, 1, 1)
        weight = (crops.abs().sum(dim=1, keepdim=True) > 1e-4).float()  # the mean colour is all zeros
        rgb = (crops * std + mean) * weight
        return rgb.sum(dim=(2, 3)) / weight.sum(dim=(2, 3)).clamp(min=1) - 0.5


def _colour_scene() -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Shapes on a green field; without masking, red or blue on green would read as yellow or cyan."""
    image = np.zeros((60, 80, 3), dtype=np.uint8)
    image[:] = (0, 255, 0)
    masks = np.zeros((6, 60, 80), dtype=bool)
    masks[0, 10:22, 10:22] = True  # red square
    rows, cols = np.ogrid[:60, :80]
    masks[1] = (rows - 40) ** 2 + (cols - 20) ** 2 <= 36  # blue disk
    masks[2, 0:8, 50:80] = True  # yellow bar in the top-right corner
    masks[3, 30:32, 60:62] = True  # tiny magenta square
    masks[4, 45:60, 45:75] = True  # cyan block on the bottom edge
    for mask, name in zip(masks[:5], ["red", "blue", "yellow", "magenta", "cyan"], strict=True):
        image[mask] = np.array(COLOURS[name]) * 255
    masks[5] = ~masks[:5].any(axis=0)  # the green field around them
    return image, masks, ["red", "blue", "yellow", "magenta", "cyan", "green"]


def _colour_labeler(**options) -> ClipLabeler:
    return ClipLabeler(ColourClip(), ColourTokenizer(), COLOUR_INPUT, "cpu", **options)


def test_colour_model_names_every_mask() -> None:
    image, masks, expected = _colour_scene()
    classes = ["cyan", "blue", "magenta", "green", "yellow", "red"]  # not in mask order
    labels = _colour_labeler(batch_size=4, margin=0.5).label(image, masks, classes)
    assert labels.names == expected
    assert np.all(labels.scores > 0.5)


def test_colour_model_needs_the_masking() -> None:
    image, masks, expected = _colour_scene()
    kept = _colour_labeler(margin=1.0, background_value=None).label(image, masks[:2], NAMES)
    assert kept.names != expected[:2]  # the surrounding green leaks in
    masked = _colour_labeler(margin=1.0).label(image, masks[:2], NAMES)
    assert masked.names == expected[:2]


def test_colour_model_names_boxes() -> None:
    image, _, _ = _colour_scene()
    boxes = np.array([[10, 10, 22, 22], [50, 0, 80, 8], [45, 45, 75, 60], [-20, -20, -5, -5]], np.float32)
    labels = _colour_labeler(margin=0.0).label_boxes(image, boxes, NAMES)
    assert labels.names == ["red", "yellow", "cyan", NO_LABEL]


@pytest.mark.parametrize("suffix", [".pt", ".safetensors"])
def test_from_pretrained_loads_a_checkpoint_file(tmp_path, suffix: str) -> None:
    model = _tiny_model(seed=3)
    path = tmp_path / f"tiny{suffix}"
    if suffix == ".pt":
        torch.save(model.state_dict(), path)
    else:
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, path)
    loaded = ClipLabeler.from_pretrained(path, architecture=TINY_CLIP, device="cpu", threshold=0.2)
    assert loaded.threshold == 0.2 and loaded.clip_input.size == (32, 32)
    torch.testing.assert_close(loaded.text_embeddings(CLASSES), _labeler(model).text_embeddings(CLASSES))
    image, masks = _scene()
    expected = _labeler(model).label(image, masks, CLASSES)
    np.testing.assert_allclose(loaded.label(image, masks, CLASSES).scores, expected.scores, rtol=1e-5)


def test_from_pretrained_errors(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GROUNDED_SAM_HOME", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(WeightsNotFoundError, match=r"open_clip_ViT-B-32_laion2b_s34b_b79k\.bin"):
        build_clip_labeler("clip_vit_b32")
    with pytest.raises(WeightsNotFoundError, match="not found"):
        build_clip_labeler("clip_vit_b32", checkpoint=tmp_path / "missing.bin")
    with pytest.raises(ValueError, match="Did you mean 'clip_vit_b32'"):
        build_clip_labeler("clip_vit_b33")
    with pytest.raises(ValueError, match="architecture="):
        ClipLabeler.from_pretrained(tmp_path / "weights.bin")
    wrong = tmp_path / "wrong.pt"
    torch.save({"logit_scale": torch.zeros(())}, wrong)
    with pytest.raises(ValueError, match="could not load"):
        ClipLabeler.from_pretrained(wrong, architecture=TINY_CLIP)


@pytest.mark.parametrize(
    ("name", "quick_gelu", "mean"),
    [("clip_vit_b32_openai", True, open_clip.OPENAI_DATASET_MEAN), ("clip_vit_l14", False, (0.5, 0.5, 0.5))],
)
def test_registered_weights_load_with_their_tag_settings(
    tmp_path, monkeypatch, name, quick_gelu, mean
) -> None:
    """Local files lose open_clip's tag lookup; the spec must restore QuickGELU and the mean/std."""
    seen = {}

    def fake_create_model(architecture: str, **kwargs) -> nn.Module:
        seen.update(kwargs, architecture=architecture)
        model = _tiny_model()
        open_clip.set_model_preprocess_cfg(model, {"size": 32, **kwargs["force_preprocess_cfg"]})
        return model

    monkeypatch.setattr(open_clip, "create_model", fake_create_model)
    weights = tmp_path / "weights.bin"
    weights.write_bytes(b"")
    labeler = build_clip_labeler(name, checkpoint=weights, device="cpu")
    assert seen["architecture"] == CLIP_MODELS[name].architecture
    assert seen["pretrained"] == str(weights) and seen["require_pretrained"] is True
    assert seen["force_quick_gelu"] is quick_gelu
    np.testing.assert_allclose(labeler.clip_input.mean, mean)


def test_registry_table_names_open_clip_tags() -> None:
    assert list_clip_models() == sorted(CLIP_MODELS) and "clip_vit_b32" in CLIP_MODELS
    spec = CLIP_MODELS["clip_vit_b32"]
    assert (spec.architecture, spec.pretrained_tag) == ("ViT-B-32", "laion2b_s34b_b79k")
    assert spec.weights.hf_repo_id == "laion/CLIP-ViT-B-32-laion2B-s34B-b79K"
    filenames = [s.weights.filename for s in CLIP_MODELS.values()]
    assert len(set(filenames)) == len(filenames)
    for spec in CLIP_MODELS.values():
        assert spec.architecture in open_clip.list_models()
        assert open_clip.get_pretrained_cfg(spec.architecture, spec.pretrained_tag), spec
        assert spec.weights.sha256 is None  # not published alongside the files; never guessed


@pytest.mark.slow
def test_registered_architecture_loads_a_full_size_checkpoint(tmp_path) -> None:
    model = open_clip.create_model("ViT-B-32")
    path = tmp_path / "vit_b32.bin"
    torch.save(model.state_dict(), path)
    labeler = build_clip_labeler("clip_vit_b32", checkpoint=path, device="cpu")
    image, masks = _scene()
    labels = labeler.label(image, masks, CLASSES)
    assert labels.class_ids.shape == (5,) and labeler.clip_input.size == (224, 224)
