"""Fixtures for labelling tests: a nested folder of synthetic scenes and a pipeline that knows their truth.

The detector looks each image up by a hash of its pixels and returns the ground-truth boxes of the
phrases asked for; masks come from a tiny random SAM (or, on request, the ground truth). Everything is
module-level so that a pipeline factory (`factory(folder)`) pickles for Ray workers and subprocesses.
"""

from __future__ import annotations

import functools
import hashlib
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from grounded_sam.data import SceneConfig, load_scene, write_scene_folder
from grounded_sam.pipeline import GroundedSAM
from grounded_sam.sam.predictor import SamPredictor
from grounded_sam.text.base import Detections
from tests.sam.builders import random_sam

CONFIG = SceneConfig(
    size=(48, 64),
    min_objects=1,
    max_objects=3,
    shapes=("circle", "square"),
    colors=("red", "blue"),
    size_range=(0.3, 0.5),
)
ONTOLOGY = {"red circle": "disc", "blue circle": "disc", "red square": "box", "blue square": "box"}
CORRUPT = "sub/broken.png"
NOTE = "notes.txt"


@dataclass(frozen=True)
class Truth:
    boxes: np.ndarray  # (N, 4) float32 XYXY, pixel edges
    labels: tuple[str, ...]
    masks: np.ndarray  # (N, H, W) bool


def pixel_key(image: np.ndarray) -> str:
    return hashlib.sha1(np.ascontiguousarray(image).tobytes()).hexdigest()


def write_folder(root: Path, n: int = 8, seed: int = 3) -> dict[str, Truth]:
    """`n` scenes in nested folders (3 per folder) plus a text file and a corrupt PNG; returns the ground
    truth by relative image path."""
    paths = write_scene_folder(root, n, seed, CONFIG, per_folder=3)
    (root / "sub").mkdir(exist_ok=True)
    (root / CORRUPT).write_bytes(b"\x89PNG\r\n\x1a\n this is not really a png")
    (root / NOTE).write_text("not an image")
    truth = {}
    for path in paths:
        scene = load_scene(path.with_suffix(".json"))
        truth[path.relative_to(root).as_posix()] = Truth(scene.boxes, tuple(scene.labels), scene.masks)
    return truth


def scene_table(folder: str | os.PathLike[str]) -> dict[str, Truth]:
    """Ground truth of every scene under `folder`, keyed by a hash of its pixels."""
    table = {}
    for json_path in sorted(Path(folder).rglob("scene_*.json")):
        scene = load_scene(json_path)
        table[pixel_key(scene.image)] = Truth(scene.boxes, tuple(scene.labels), scene.masks)
    return table


class GroundTruthDetector:
    """Returns the ground-truth boxes (of the asked phrases) of the scene whose pixels it is given."""

    def __init__(self, table: dict[str, Truth], delay: float = 0.0) -> None:
        self.table, self.delay = table, delay

    def detect(self, image, phrases: Sequence[str], *, box_threshold=None, text_threshold=None) -> Detections:
        if self.delay:
            time.sleep(self.delay)
        truth = self.table[pixel_key(image)]
        keep = [i for i, label in enumerate(truth.labels) if label in phrases]
        scores = np.array([0.95 - 0.1 * i for i in range(len(keep))], dtype=np.float32)
        if box_threshold is not None:
            scores = np.maximum(scores, box_threshold)
        ids = [list(phrases).index(truth.labels[i]) for i in keep]
        return Detections(truth.boxes[keep], scores, ids, tuple(phrases))


class TruthPredictor(SamPredictor):
    """A SAM stand-in returning the ground-truth mask of each box, so that exported polygons can be
    compared with clean shapes (a random SAM gives speckles)."""

    def __init__(self, table: dict[str, Truth]) -> None:  # no model: nothing of SamPredictor is used
        self.table = table
        self.key = ""

    def set_image(self, image, image_format="RGB") -> None:
        self.key = pixel_key(image)

    def predict_boxes(self, boxes, multimask_output=False, return_logits=False):
        truth = self.table[self.key]
        rows = [int(np.flatnonzero((truth.boxes == box).all(axis=1))[0]) for box in np.asarray(boxes)]
        masks = truth.masks[rows][:, None]
        scores = np.full((len(rows), 1), 0.875, dtype=np.float32)
        return masks, scores, np.zeros((len(rows), 1, 4, 4), dtype=np.float32)


def scripted_pipeline_for(folder: str, delay: float = 0.0, masks: str = "sam") -> GroundedSAM:
    """A pipeline for the scenes under `folder`: ground-truth boxes; masks from a tiny random SAM (seeded)
    or, with ``masks="truth"``, the ground-truth masks."""
    table = scene_table(folder)
    predictor = TruthPredictor(table) if masks == "truth" else SamPredictor(random_sam(seed=2))
    return GroundedSAM(GroundTruthDetector(table, delay), predictor)


def factory(folder: Path, delay: float = 0.0, masks: str = "sam") -> functools.partial[GroundedSAM]:
    return functools.partial(scripted_pipeline_for, str(folder), delay, masks)


def tree_bytes(root: Path) -> dict[str, bytes]:
    """Every file under `root` by relative path (state included), for byte-for-byte comparisons."""
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}
