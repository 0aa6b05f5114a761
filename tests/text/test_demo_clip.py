"""Tests for the embedded demo CLIP: shipped weights, integrity check, accuracy, the phrase rule."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
from open_clip.modified_resnet import ModifiedResNet

from grounded_sam import weights
from grounded_sam.data import SceneConfig, all_class_names, iter_scenes
from grounded_sam.text.base import Labels
from grounded_sam.text.clip import ClipLabeler
from grounded_sam.text.demo_clip import (
    BACKGROUND_PHRASE,
    DEMO_CLIP_CONFIG,
    DEMO_CLIP_MARGIN,
    DEMO_CLIP_WEIGHTS,
    build_demo_clip,
    canonical_phrase,
    clip_input_for,
    demo_clip_labeler,
    demo_tokenizer,
    findable,
    load_demo_clip,
    match_phrases,
    naming_matrix,
    phrase_scores,
    phrase_vocabulary,
    phrase_words,
    untaught_words,
)
from grounded_sam.train.clip_data import region_crops
from grounded_sam.weights import WeightsIntegrityError, bundled_path, sha256_of

HELD_OUT_SEED = 424_242  # never a training stream
CLASSES = all_class_names()


@pytest.fixture(scope="module")
def held_out():
    return list(iter_scenes(HELD_OUT_SEED, 20, SceneConfig()))


@pytest.fixture(scope="module")
def labeler():
    return demo_clip_labeler(device="cpu")


def class_accuracy(labeler: ClipLabeler, scenes) -> float:
    right = total = 0
    for scene in scenes:
        ids = labeler.label(scene.image, scene.masks, CLASSES).class_ids
        right += sum(CLASSES[i] == label for i, label in zip(ids, scene.labels, strict=True))
        total += len(scene)
    return right / total


def test_shipped_weights_match_their_sha256_and_config():
    path = bundled_path(DEMO_CLIP_WEIGHTS.filename)
    assert DEMO_CLIP_WEIGHTS.bundled and path.is_file()
    assert sha256_of(path) == DEMO_CLIP_WEIGHTS.sha256
    assert path.stat().st_size < 11_000_000  # 6.3 MB of it: the 49408-token embedding table
    model = load_demo_clip()
    assert not model.training
    assert isinstance(model.visual, ModifiedResNet) and model.visual.image_size == 64
    assert clip_input_for(DEMO_CLIP_CONFIG).size == (64, 64)
    assert sum(p.numel() for p in model.parameters()) == sum(
        p.numel() for p in build_demo_clip().parameters()
    )


def test_corrupt_shipped_file_is_refused(tmp_path, monkeypatch):
    copy = tmp_path / DEMO_CLIP_WEIGHTS.filename
    shutil.copyfile(bundled_path(DEMO_CLIP_WEIGHTS.filename), copy)
    data = bytearray(copy.read_bytes())
    data[-1] ^= 0xFF
    copy.write_bytes(bytes(data))
    monkeypatch.setattr(weights, "bundled_path", lambda filename: tmp_path / filename)
    with pytest.raises(WeightsIntegrityError, match="sha256"):
        load_demo_clip()
    # The same bytes passed explicitly are the caller's own file: loaded without a hash check.
    data[-1] ^= 0xFF
    copy.write_bytes(bytes(data))
    assert load_demo_clip(copy) is not None


def test_wrong_architecture_is_a_value_error():
    small = dict(DEMO_CLIP_CONFIG, embed_dim=32)
    with pytest.raises(ValueError, match="does not hold weights"):
        load_demo_clip(config=small)


def test_shipped_model_names_held_out_crops(labeler, held_out):
    assert class_accuracy(labeler, held_out) >= 0.8  # chance is 1 / 64


def test_random_model_is_near_chance(held_out):
    torch.manual_seed(0)
    model = build_demo_clip()
    random_labeler = ClipLabeler(model, demo_tokenizer(), clip_input_for(DEMO_CLIP_CONFIG), "cpu")
    assert class_accuracy(random_labeler, held_out) <= 0.15


def test_shipped_model_rejects_background_and_keeps_objects(labeler, held_out):
    scene = next(s for s in held_out if len(s) >= 2)
    rest = ~scene.masks.any(axis=0)
    masks = np.concatenate([scene.masks, rest[None]])
    names = labeler.label(scene.image, masks, [*CLASSES, BACKGROUND_PHRASE]).names
    assert names[-1] == BACKGROUND_PHRASE
    assert sum(a == b for a, b in zip(names, scene.labels, strict=False)) >= len(scene) - 1


def test_training_crops_are_the_labelers_crops(labeler, held_out):
    scene = held_out[0]
    seen: list[torch.Tensor] = []
    encode = labeler.model.encode_image

    def spy(crops, *args, **kwargs):
        seen.append(crops.clone())
        return encode(crops, *args, **kwargs)

    labeler.model.encode_image = spy
    try:
        labeler.label(scene.image, scene.masks, ["red circle"])
    finally:
        del labeler.model.encode_image
    assert labeler.margin == DEMO_CLIP_MARGIN
    expected = region_crops(scene.image, scene.masks, labeler.clip_input, DEMO_CLIP_MARGIN, "mean")
    assert torch.allclose(torch.cat(seen), expected, atol=1e-6)


def test_phrase_vocabulary_puts_phrases_first_without_duplicates():
    vocabulary = phrase_vocabulary(["red circle", "a red circles", "blue shape", "shiny thing"])
    assert vocabulary[:2] == ["red circle", "blue"]  # spelled as taught; untaught phrases left out
    assert vocabulary[-1] == BACKGROUND_PHRASE
    assert len(vocabulary) == 1 + 64 + 1 and len(set(vocabulary)) == len(vocabulary)
    with pytest.raises(TypeError):
        phrase_vocabulary("red circle")


@pytest.mark.parametrize(
    ("top", "phrase", "hit"),
    [
        ("red circle", "red circle", True),
        ("red circle", "a red shape", True),
        ("red circle", "circle", True),
        ("blue circle", "red circle", False),
        ("blue circle", "red shape", False),
        (BACKGROUND_PHRASE, "shape", False),
        ("blue star", "shapes", True),  # no content word, a noun for any object
        ("blue star", "the", False),  # no content word, no noun: nothing
        ("red circle", "shiny red circle", False),  # an untaught word: no class names it
        (BACKGROUND_PHRASE, BACKGROUND_PHRASE, True),
    ],
)
def test_match_phrases_rule(top, phrase, hit):
    classes = tuple(phrase_vocabulary([phrase]))
    labels = Labels(np.array([classes.index(top), -1]), np.array([0.9, 0.0], np.float32), classes)
    assert match_phrases(labels, [phrase]).tolist() == [0 if hit else -1, -1]


def test_phrase_scores_sum_the_classes_that_name_each_phrase():
    classes = ("red circle", "red hexagon", "blue circle", BACKGROUND_PHRASE)
    probabilities = np.array([[0.40, 0.45, 0.05, 0.10], [0.0, 0.0, 0.0, 0.0]], np.float32)
    labels = Labels(np.array([1, -1]), np.array([0.45, 0.0], np.float32), classes, probabilities)
    scores = phrase_scores(labels, ["red circle", "circle", "red shape", "blue star"])
    np.testing.assert_allclose(scores[0], [0.40, 0.45, 0.85, 0.0], rtol=1e-6)
    assert not scores[1].any()
    # The top class alone ("red hexagon") does not name "red circle"; its probability still counts.
    assert match_phrases(labels, ["red circle"]).tolist() == [-1, -1]


def test_phrase_scores_without_probabilities_count_the_top_class():
    classes = ("red circle", "red hexagon", BACKGROUND_PHRASE)
    labels = Labels(np.array([1, 0, -1]), np.array([0.7, 0.6, 0.2], np.float32), classes)
    scores = phrase_scores(labels, ["red hexagon", "red"])
    np.testing.assert_allclose(scores, [[0.7, 0.7], [0.0, 0.6], [0.0, 0.0]], rtol=1e-6)


def test_phrase_words_drop_fillers():
    assert phrase_words("A red Shape.") == {"red"}
    assert phrase_words("the star") == {"star"}
    assert phrase_words("a photo of a Red-colored circle") == {"red", "circle"}


@pytest.mark.parametrize(
    ("phrase", "canonical", "untaught"),
    [
        ("circles", "circle", set()),
        ("Red Crosses", "red cross", set()),
        ("a picture of blue ellipses", "blue ellipse", set()),
        ("star that is yellow", "yellow star", set()),
        ("red circle on the left", "", {"on", "left"}),
        ("zebra", "zebra", {"zebra"}),
        ("crimson circle", "crimson circle", {"crimson"}),
        ("shape", "shape", set()),
    ],
)
def test_phrases_are_spelled_as_taught_and_untaught_words_are_found(phrase, canonical, untaught):
    assert untaught_words(phrase) == untaught
    if not untaught:
        assert canonical_phrase(phrase) == canonical


def test_findable_phrases_have_taught_content_words_or_a_noun_for_any_object():
    assert all(map(findable, ["blue stars", "red", "shapes", "an object", "something", "Background"]))
    assert not any(map(findable, ["", "the", "a.", "zebra", "crimson circle", "red circle on the left"]))


def test_a_phrase_with_an_untaught_word_is_named_by_no_class():
    classes = ("red circle", "zebra", "circle", BACKGROUND_PHRASE)
    names = naming_matrix(classes, ["zebra", "red zebra", "red circles", "circles"])
    assert not names[:, :2].any()
    assert names[:, 2].tolist() == [True, False, False, False]
    assert names[:, 3].tolist() == [True, False, True, False]
