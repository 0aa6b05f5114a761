"""Held-out evaluation of a CLIP labeler on synthetic scenes, through the labeler's own inference path.

Metrics (fractions in [0, 1]) over the ground-truth instances of the scenes:

* ``class_accuracy``: top class among the 64 class names is the true one;
* ``color_accuracy`` / ``shape_accuracy``: top phrase among "<colour> shape" / "<shape>" is right;
* ``background_rejection``: background crops (background regions, two merged objects) whose top
  class among the 64 names plus "background" is "background"; ``false_rejection``: instances for
  which it is "background";
* ``phrase_precision`` / ``phrase_recall``: the :func:`~grounded_sam.text.demo_clip.match_phrases`
  rule over instances and background crops, for queries of a full class name present in the scene, one
  absent, one "<colour> shape" and one "<shape>".

Example::

    python -m grounded_sam.train.clip_eval --scenes 200 --seed 1000
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Iterable, Sequence

import numpy as np

from grounded_sam.data import Scene, SceneConfig, all_class_names, iter_scenes, make_pil_scene, scene_seed
from grounded_sam.text.clip import ClipLabeler
from grounded_sam.text.demo_clip import (
    BACKGROUND_PHRASE,
    demo_clip_labeler,
    match_phrases,
    phrase_vocabulary,
    phrase_words,
)
from grounded_sam.train.clip_data import background_masks


def _queries(scene: Scene, classes: Sequence[str], rng: np.random.Generator) -> list[str]:
    present = sorted(set(scene.labels))
    absent = [name for name in classes if name not in present]
    first = int(rng.integers(len(scene)))
    return [
        present[rng.integers(len(present))],
        absent[rng.integers(len(absent))],
        f"{scene.colors[first]} shape",
        scene.shapes[first],
    ]


def _relevant(scene: Scene, phrase: str, n_negatives: int) -> np.ndarray:
    words = phrase_words(phrase)
    hits = [words <= {color, shape} for color, shape in zip(scene.colors, scene.shapes, strict=True)]
    return np.array(hits + [False] * n_negatives, dtype=bool)


def evaluate_labeler(
    labeler: ClipLabeler, scenes: Iterable[Scene], config: SceneConfig | None = None, seed: int = 0
) -> dict[str, float]:
    """The metrics of the module docstring for ``labeler`` on ``scenes`` (drawn with ``config``'s names)."""
    config = config or SceneConfig()
    rng = np.random.default_rng(seed)
    classes = all_class_names(config)
    color_phrases = [f"{c} shape" for c in config.colors]
    counts = dict.fromkeys(("class", "color", "shape", "rejected", "false_rejected", "tp", "fp", "fn"), 0)
    n_instances = n_negatives = 0
    for scene in scenes:
        if len(scene) == 0:
            continue
        negatives = background_masks(scene, 2, rng)
        truth_class = np.array([classes.index(label) for label in scene.labels])
        truth_color = np.array([config.colors.index(c) for c in scene.colors])
        truth_shape = np.array([config.shapes.index(s) for s in scene.shapes])
        counts["class"] += int(
            (labeler.label(scene.image, scene.masks, classes).class_ids == truth_class).sum()
        )
        colors = labeler.label(scene.image, scene.masks, color_phrases).class_ids
        counts["color"] += int((colors == truth_color).sum())
        counts["shape"] += int(
            (labeler.label(scene.image, scene.masks, config.shapes).class_ids == truth_shape).sum()
        )
        every = np.concatenate(
            [scene.masks, np.array(negatives, dtype=bool).reshape(-1, *scene.masks.shape[1:])]
        )
        named = labeler.label(scene.image, every, [*classes, BACKGROUND_PHRASE]).names
        counts["false_rejected"] += sum(name == BACKGROUND_PHRASE for name in named[: len(scene)])
        counts["rejected"] += sum(name == BACKGROUND_PHRASE for name in named[len(scene) :])
        for phrase in _queries(scene, classes, rng):
            labels = labeler.label(scene.image, every, phrase_vocabulary([phrase]))
            chosen = match_phrases(labels, [phrase]) == 0
            relevant = _relevant(scene, phrase, len(negatives))
            counts["tp"] += int((chosen & relevant).sum())
            counts["fp"] += int((chosen & ~relevant).sum())
            counts["fn"] += int((~chosen & relevant).sum())
        n_instances += len(scene)
        n_negatives += len(negatives)
    return {
        "class_accuracy": counts["class"] / max(n_instances, 1),
        "color_accuracy": counts["color"] / max(n_instances, 1),
        "shape_accuracy": counts["shape"] / max(n_instances, 1),
        "background_rejection": counts["rejected"] / max(n_negatives, 1),
        "false_rejection": counts["false_rejected"] / max(n_instances, 1),
        "phrase_precision": counts["tp"] / max(counts["tp"] + counts["fp"], 1),
        "phrase_recall": counts["tp"] / max(counts["tp"] + counts["fn"], 1),
        "instances": float(n_instances),
    }


def evaluate_weights(
    weights: str | os.PathLike[str] | None, n_scenes: int = 200, seed: int = 1000
) -> dict[str, float]:
    """Metrics of a demo-architecture weights file (``None``: the shipped one) on held-out scenes.

    Keys are ``synthetic/<metric>`` (``make_scene`` at its default 256 x 256 config, stream ``seed``)
    and ``pil/<metric>`` (``make_pil_scene``, the differently drawn generator, stream ``seed + 1``).
    """
    labeler = demo_clip_labeler(weights, device="cpu")
    config = SceneConfig()
    synthetic = evaluate_labeler(labeler, iter_scenes(seed, n_scenes, config), config, seed)
    pil_scenes = (make_pil_scene(scene_seed(seed + 1, i), config=config) for i in range(n_scenes))
    pil = evaluate_labeler(labeler, pil_scenes, config, seed + 1)
    metrics = {f"synthetic/{key}": value for key, value in synthetic.items()}
    metrics.update({f"pil/{key}": value for key, value in pil.items()})
    return metrics


def main(argv: list[str] | None = None) -> None:
    """Command line: print the held-out metrics of a weights file."""
    import torch

    parser = argparse.ArgumentParser(
        prog="python -m grounded_sam.train.clip_eval", description=__doc__.split("\n")[0]
    )
    parser.add_argument(
        "--weights", default=None, help="safetensors file (default: the shipped demo weights)"
    )
    parser.add_argument("--scenes", type=int, default=200)
    parser.add_argument("--seed", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    for name, value in evaluate_weights(args.weights, args.scenes, args.seed).items():
        print(f"{name}: {value:.4f}")


if __name__ == "__main__":  # pragma: no cover
    main()
