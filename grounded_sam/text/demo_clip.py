"""The embedded demo CLIP: a small open_clip model trained here on the synthetic shape scenes.

It names mask crops of coloured shapes ("red circle", "blue star", ...) and understands partial
phrases ("red shape", "circle") and a "background" phrase for regions that are not one object. Its
image tower is open_clip's ``ModifiedResNet`` (two bottleneck blocks per stage, width 16, attention
pooling) at 64 px: on this CPU it learns shapes far faster than a ViT of the same cost (after 400 steps,
held-out class accuracy 0.90 against the 4-layer ViT's 0.68; after the full run 0.985 against 0.928).
The weights ship in ``grounded_sam/assets/`` and are sha256-checked when loaded; no download is needed.
Training: :mod:`grounded_sam.train.clip_trainer`. The shipped file is the trainer's default run (seed 0,
2000 steps of 24 scenes, a quarter of them seen through the shipped demo SAM's box masks):
``python -m grounded_sam.train clip --out runs/clip``, 21 minutes on this 2-core CPU (1270 s, one
model thread and one data worker). Held-out (200 scenes, seed 1000): class accuracy 0.985, colour 1.0,
shape 0.985, background rejection 0.988; on plainly drawn PIL scenes 0.988. (The shipped file was made
with two model threads and the data made between steps: the same data, other float rounding; that
command's weights score 0.986 and 0.981.)

Matching masks to a user phrase: label every mask against ``phrase_vocabulary(phrases)`` (the phrases,
the 64 class names and "background"); a phrase's score is the probability of the classes that name it:
the phrase itself, or a class name containing every word of the phrase (so "red" or "red shape" collects
"red circle"); see :func:`phrase_scores`. :func:`match_phrases` is the stricter top-class rule the
trainer's evaluation measures. A phrase is asked about as the model was taught it ("a red circles" as
"red circle", :func:`canonical_phrase`); one with a word it was never taught ("zebra", "crimson circle",
:func:`untaught_words`) finds nothing rather than whatever its untrained text embedding lies near.

Example:
    >>> labeler = demo_clip_labeler()
    >>> classes = phrase_vocabulary(["red circle"])
    >>> scores = phrase_scores(labeler.label(image, masks, classes), ["red circle"])  # (N, 1)
"""

from __future__ import annotations

import copy
import os
import warnings
from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Any

import numpy as np
import open_clip
import torch
from safetensors.torch import load_file

from grounded_sam.data import SceneConfig, all_class_names
from grounded_sam.text.base import Labels
from grounded_sam.text.clip import DEFAULT_TEMPLATES, ClipLabeler
from grounded_sam.text.crops import Background, ClipInput
from grounded_sam.weights import WeightsSpec, check_dtypes, loader_errors, resolve_weights

DEMO_CLIP_NAME = "demo_clip"

DEMO_CLIP_CONFIG: Mapping[str, Any] = MappingProxyType(
    {
        "embed_dim": 64,
        "vision_cfg": {"image_size": 64, "layers": (2, 2, 2, 2), "width": 16, "head_width": 32},
        "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 64, "heads": 4, "layers": 3},
    }
)
"""Keyword arguments of ``open_clip.CLIP`` for the demo model (64 px input, 8 x 8 patches)."""

DEMO_CLIP_WEIGHTS = WeightsSpec(
    "demo_clip.safetensors",
    "ours",
    sha256="7587aa2b0a004287a71210e2593a005415c06d62c110666f75c7faa38d5c425f",
    bundled=True,
)

# How crops are made, shared by training and inference so the model sees the same inputs in both.
DEMO_CLIP_MARGIN = 0.1
DEMO_CLIP_BACKGROUND: Background = "mean"
DEMO_CLIP_TEMPLATES: tuple[str, ...] = DEFAULT_TEMPLATES

BACKGROUND_PHRASE = "background"
"""The phrase the demo model was taught for regions that are not one whole object."""

# Words that add nothing to a phrase's meaning when matching it against a class name.
# Nouns for any object: a phrase of these and filler words ("shapes", "an object") names every object.
_ANY_OBJECT_WORDS = frozenset({"shape", "shapes", "object", "objects", "thing", "things", "something"})
_FILLER_WORDS = _ANY_OBJECT_WORDS | frozenset(
    {"a", "an", "the", "one", "ones", "of", "any", "some", "all", "every", "kind", "that", "is"}
    | {"colored", "coloured", "color", "colour", "photo", "image", "picture"}
)
# The content words the demo model was taught, in the order class names spell them.
_SCENES = SceneConfig()
_TAUGHT_ORDER = (*_SCENES.colors, *_SCENES.shapes, BACKGROUND_PHRASE)
_TAUGHT_WORDS = frozenset(_TAUGHT_ORDER)


def demo_clip_config() -> dict[str, Any]:
    """A fresh, mutable copy of :data:`DEMO_CLIP_CONFIG`."""
    return copy.deepcopy(dict(DEMO_CLIP_CONFIG))


def clip_input_for(config: Mapping[str, Any]) -> ClipInput:
    """The crop size and normalisation of a model built from ``config`` (OpenAI mean and std)."""
    return ClipInput(
        config["vision_cfg"]["image_size"], open_clip.OPENAI_DATASET_MEAN, open_clip.OPENAI_DATASET_STD
    )


def build_demo_clip(config: Mapping[str, Any] | None = None) -> open_clip.CLIP:
    """A randomly initialised open_clip ``CLIP`` with ``config`` (default :data:`DEMO_CLIP_CONFIG`)."""
    config = demo_clip_config() if config is None else copy.deepcopy(dict(config))
    return open_clip.CLIP(**config)


def demo_tokenizer(config: Mapping[str, Any] | None = None) -> open_clip.SimpleTokenizer:
    """open_clip's BPE tokenizer (its vocabulary ships inside open_clip) at the model's context length."""
    config = DEMO_CLIP_CONFIG if config is None else config
    return open_clip.SimpleTokenizer(context_length=config["text_cfg"]["context_length"])


def load_demo_clip(
    checkpoint: str | os.PathLike[str] | None = None, config: Mapping[str, Any] | None = None
) -> open_clip.CLIP:
    """The demo model in eval mode, float32 on the CPU, with the shipped (sha256-checked) weights.

    Args:
        checkpoint: another ``.safetensors`` file of the same architecture (e.g. from a training run);
            it is not hash-checked.
        config: the architecture of ``checkpoint`` if it is not the demo one.

    Raises:
        WeightsNotFoundError: the shipped file is missing (broken install) or ``checkpoint`` does not exist.
        WeightsIntegrityError: the shipped file does not match its sha256.
        ValueError: the weights do not fit the architecture.
    """
    # An explicit file is the caller's own (e.g. a new training run): only the shipped one has a hash.
    path = resolve_weights(DEMO_CLIP_NAME, None if checkpoint else DEMO_CLIP_WEIGHTS, checkpoint)
    model = build_demo_clip(config)
    with loader_errors(path, "the demo CLIP"):
        loaded = load_file(str(path))
    check_dtypes(model.state_dict(), loaded, path)
    state = {key: value.float() for key, value in loaded.items()}
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as error:
        raise ValueError(f"{path} does not hold weights for this CLIP architecture: {error}") from error
    return model.eval()


def demo_clip_labeler(
    checkpoint: str | os.PathLike[str] | None = None,
    device: str | torch.device | None = None,
    **options: Any,
) -> ClipLabeler:
    """A :class:`ClipLabeler` for the shipped demo model, with the crop settings it was trained with.

    ``options`` are other :class:`ClipLabeler` keyword arguments (threshold, batch_size, ...).

    Example:
        >>> labeler = demo_clip_labeler()
        >>> labeler.label(image, masks, ["red circle", "blue star", "background"]).names
    """
    settings: dict[str, Any] = {
        "templates": DEMO_CLIP_TEMPLATES,
        "margin": DEMO_CLIP_MARGIN,
        "background_value": DEMO_CLIP_BACKGROUND,
    }
    settings.update(options)
    model = load_demo_clip(checkpoint)
    return ClipLabeler(model, demo_tokenizer(), clip_input_for(DEMO_CLIP_CONFIG), device, **settings)


def phrase_vocabulary(phrases: Sequence[str]) -> list[str]:
    """The classes to label masks against for ``phrases``: the phrases, every class name, "background".

    Duplicates and phrases the model cannot find (:func:`findable`) are dropped, phrases first.
    """
    if isinstance(phrases, str):
        raise TypeError(f"phrases must be a list of strings, not one string: use [{phrases!r}]")
    taught = [canonical_phrase(phrase) for phrase in phrases if findable(phrase)]
    names = [*taught, *all_class_names(), BACKGROUND_PHRASE]
    return list(dict.fromkeys(name.strip() for name in names))


def phrase_words(phrase: str) -> frozenset[str]:
    """The content words of a phrase: lower-cased, filler words ("a", "shape", ...) removed, and the
    plural of a taught word made singular ("red circles" → {"red", "circle"})."""
    return frozenset(_singular(word) for word in _tokens(phrase) if word not in _FILLER_WORDS)


def _tokens(phrase: str) -> list[str]:
    """The lower-cased words of ``phrase``, split at spaces, commas, full stops and hyphens."""
    return phrase.lower().replace(",", " ").replace(".", " ").replace("-", " ").split()


def _singular(word: str) -> str:
    """``word`` without a plural "s" / "es" when that leaves a taught word ("crosses" → "cross")."""
    for suffix in ("s", "es"):
        if word not in _TAUGHT_WORDS and word.endswith(suffix) and word[: -len(suffix)] in _TAUGHT_WORDS:
            return word[: -len(suffix)]
    return word


def untaught_words(phrase: str) -> frozenset[str]:
    """The content words of ``phrase`` the demo model was never taught (not one of its colours, shapes
    or "background"): "zebra", "crimson", "left" in "red circle on the left"."""
    return phrase_words(phrase) - _TAUGHT_WORDS


def warn_untaught(phrases: Sequence[str], stacklevel: int = 2) -> None:
    """A UserWarning naming the words of ``phrases`` the demo model was never taught, if any."""
    untaught = {phrase: sorted(words) for phrase in phrases if (words := untaught_words(phrase))}
    if untaught:
        warnings.warn(
            f"the demo model was never taught these words, so it finds nothing for them: {untaught}; "
            f"it knows colours and shapes such as {', '.join(all_class_names()[:3])}, ...",
            stacklevel=stacklevel + 1,
        )


def findable(phrase: str) -> bool:
    """Whether the demo model can look for what ``phrase`` names: it has content words, all taught
    ("red", "blue stars"), or only a noun for any object and filler words ("shapes", "an object")."""
    words = phrase_words(phrase)
    if words:
        return words <= _TAUGHT_WORDS
    return not _ANY_OBJECT_WORDS.isdisjoint(_tokens(phrase))


def canonical_phrase(phrase: str) -> str:
    """A phrase of taught words spelled as the class names are: colour then shape, singular, without
    filler words ("a red colored circles" → "red circle"); any other phrase stripped.

    CLIP is asked about this spelling: the model only learned text embeddings for the words it was
    taught, so "circles" as such would land near some other shape."""
    words = phrase_words(phrase)
    if not words or not words <= _TAUGHT_WORDS:
        return phrase.strip()
    return " ".join(word for word in _TAUGHT_ORDER if word in words)


def naming_matrix(classes: Sequence[str], phrases: Sequence[str]) -> np.ndarray:
    """(K, P) bool: whether class K names phrase P, i.e. is the phrase itself (its
    :func:`canonical_phrase`), or a class other than "background" whose words include every content
    word of the phrase ("red circle" names "red", "circle" and "red shape"; a phrase without content
    words, like "shapes" or "an object", is named by every class but "background").

    A phrase the model cannot find (:func:`findable`) is named by no class: a word it was never taught
    (:func:`untaught_words`) has an untrained text embedding, and CLIP would give it the probability of
    whatever shape it lies near.
    """
    phrase_sets = [phrase_words(p) for p in phrases]
    spelled = [canonical_phrase(p) for p in phrases]
    askable = [findable(p) for p in phrases]
    matrix = np.zeros((len(classes), len(phrases)), dtype=bool)
    for row, name in enumerate(classes):
        name_words = phrase_words(name)
        for column, (phrase, words) in enumerate(zip(spelled, phrase_sets, strict=True)):
            named = name != BACKGROUND_PHRASE and words <= name_words
            matrix[row, column] = askable[column] and (name == phrase or named)
    return matrix


def match_phrases(labels: Labels, phrases: Sequence[str]) -> np.ndarray:
    """(N,) int: the phrase each mask's top class names (index into ``phrases``), -1 for none.

    ``labels`` come from labelling the masks against ``phrase_vocabulary(phrases)``; see
    :func:`naming_matrix`. The first phrase that matches wins.
    """
    names = naming_matrix(labels.classes, phrases)
    result = np.full(len(labels.class_ids), -1, dtype=np.int64)
    for row, class_id in enumerate(labels.class_ids):
        hits = np.flatnonzero(names[class_id]) if class_id >= 0 else ()
        if len(hits):
            result[row] = hits[0]
    return result


def phrase_scores(labels: Labels, phrases: Sequence[str]) -> np.ndarray:
    """(N, P) float32: each mask's probability of each phrase, the summed probability of the classes
    that name it (:func:`naming_matrix`): "circle" collects "red circle", "blue circle", ...

    Unlike :func:`match_phrases` this does not need the phrase to be the top class: a half-hidden circle
    that CLIP finds 45 % "red hexagon" and 40 % "red circle" still scores 0.4 for "red circle".
    Labels without ``probabilities`` count only their top class, with its score.
    """
    probabilities = labels.probabilities
    if probabilities is None:
        probabilities = np.zeros((len(labels.class_ids), len(labels.classes)), dtype=np.float32)
        named = np.flatnonzero(labels.class_ids >= 0)
        probabilities[named, labels.class_ids[named]] = labels.scores[named]
    names = naming_matrix(labels.classes, phrases).astype(np.float32)
    return np.asarray(probabilities, dtype=np.float32) @ names
