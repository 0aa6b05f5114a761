"""Accuracy on scenes with ground truth: SAM with box prompts, and whole text-prompted pipelines.

Scenes come from the synthetic generator (:func:`grounded_sam.data.iter_scenes`), a scene folder
written by :func:`grounded_sam.data.write_scene_folder`, or a COCO instances file
(:func:`load_coco_scenes`). Boxes are XYXY pixels, masks (H, W) bool.

Example::

    from grounded_sam.data import iter_scenes
    from grounded_sam.sam import build_sam

    scenes = list(iter_scenes(seed=1000, n=200))
    miou = box_prompt_miou(build_sam("demo_sam"), scenes)
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from grounded_sam.data import Scene, load_scene
from grounded_sam.ops import box_ious, mask_ious, masks_to_boxes
from grounded_sam.result import Result
from grounded_sam.sam.modeling.sam import Sam
from grounded_sam.sam.predictor import SamPredictor

PredictFn = Callable[[np.ndarray, list[str]], Result]
"""``predict_fn(image (H, W, 3) uint8 RGB, phrases) -> Result`` for :func:`evaluate_text_prompts`."""
Covers = Callable[[str, str], bool]
"""``covers(phrase, label)``: whether a ground-truth instance labelled ``label`` is one ``phrase`` names."""


def same_label(phrase: str, label: str) -> bool:
    """The default :data:`Covers`: a phrase names the instances of exactly its own label."""
    return phrase == label


def broad_phrases(labels: Iterable[str]) -> list[str]:
    """Broad phrases for a synthetic scene's ``"<colour> <shape>"`` labels: ``"<colour> shape"`` for each
    colour present and ``"<shape>"`` for each shape present (sorted), so one object is named twice."""
    colours = sorted({label.split()[0] for label in labels})
    shapes = sorted({label.split()[-1] for label in labels})
    return [f"{colour} shape" for colour in colours] + shapes


def box_prompt_ious(model: Sam | SamPredictor, scenes: Iterable[Scene]) -> np.ndarray:
    """Prompt SAM with every ground-truth box (one mask each) → IoU of every instance, (total N,)."""
    predictor = model if isinstance(model, SamPredictor) else SamPredictor(model.eval())
    ious = []
    for scene in scenes:
        if len(scene) == 0:
            continue
        predictor.set_image(scene.image)
        masks, _, _ = predictor.predict_boxes(scene.boxes, multimask_output=False)
        ious.append(mask_ious(masks[:, 0], scene.masks))
    return np.concatenate(ious) if ious else np.zeros(0)


def box_prompt_miou(model: Sam | SamPredictor, scenes: Iterable[Scene]) -> float:
    """Mean IoU over all instances of ``scenes`` with their ground-truth boxes as prompts.

    Raises:
        ValueError: the scenes hold no instance.
    """
    ious = box_prompt_ious(model, scenes)
    if len(ious) == 0:
        raise ValueError("the scenes hold no instance to evaluate")
    return float(ious.mean())


@dataclass(frozen=True)
class TextPromptMetrics:
    """Detection and mask quality of a text-prompted pipeline.

    Attributes:
        precision, recall: detections matched to a ground-truth instance of the same label with box
            IoU >= the threshold, over all detections / all ground-truth instances.
        miou: mean mask IoU of the matched pairs (0 when nothing matched).
        true_positives, detections, instances: the counts behind precision and recall.
    """

    precision: float
    recall: float
    miou: float
    true_positives: int
    detections: int
    instances: int


@dataclass(frozen=True)
class ScoredDetections:
    """Every detection of a text-prompt evaluation: its score and, if matched, its mask IoU.

    A detector whose suppression is greedy in score order (NMS, the demo's part rule) keeps, at a higher
    threshold, exactly the detections above it; greedy matching by score does the same. So one run at a
    low threshold gives the metrics of every higher one (:meth:`at`).

    Attributes:
        scores: (D,) detection scores.
        ious: (D,) mask IoU of each detection with the instance it matched, NaN if it matched none.
        instances: ground-truth instances of the phrases asked.
    """

    scores: np.ndarray
    ious: np.ndarray
    instances: int

    def at(self, threshold: float | None = None) -> TextPromptMetrics:
        """The metrics of the detections scoring at least ``threshold`` (None: all of them)."""
        kept = self.scores >= threshold if threshold is not None else np.ones(len(self.scores), bool)
        matched = self.ious[kept & ~np.isnan(self.ious)]
        detections, hits = int(kept.sum()), len(matched)
        return TextPromptMetrics(
            precision=hits / detections if detections else 0.0,
            recall=hits / self.instances if self.instances else 0.0,
            miou=float(matched.mean()) if hits else 0.0,
            true_positives=hits,
            detections=detections,
            instances=self.instances,
        )


def evaluate_text_prompts(
    predict_fn: PredictFn,
    scenes: Iterable[Scene],
    phrases: Sequence[str] | None = None,
    iou_threshold: float = 0.5,
) -> TextPromptMetrics:
    """Run ``predict_fn(image, phrases)`` on each scene and match its instances to the ground truth.

    Args:
        predict_fn: the pipeline under test; its result's labels must be among the phrases.
        scenes: scenes with ground truth.
        phrases: the phrases asked for on every image; by default each scene's own labels.
        iou_threshold: the box IoU a detection needs to match an instance of the same label.

    Matching is greedy by score within each label: a detection matches the unmatched instance it
    overlaps most, if that box IoU reaches the threshold.
    """
    return score_text_prompts(predict_fn, scenes, phrases, iou_threshold).at()


def score_text_prompts(
    predict_fn: PredictFn,
    scenes: Iterable[Scene],
    phrases: Sequence[str] | Callable[[Scene], list[str]] | None = None,
    iou_threshold: float = 0.5,
    covers: Covers = same_label,
) -> ScoredDetections:
    """Like :func:`evaluate_text_prompts`, but every detection with its score and match, for the metrics
    at several thresholds from one run (run ``predict_fn`` at the lowest).

    ``phrases`` may also be a function of the scene (e.g. :func:`broad_phrases` of its labels); with
    ``covers``, a phrase's ground truth is every instance it covers (an instance counts once per phrase
    that names it), e.g. "green shape" covers "green circle" and "green star"."""
    scores: list[np.ndarray] = []
    ious: list[np.ndarray] = []
    instances = 0
    for scene in scenes:
        if callable(phrases):
            asked = phrases(scene)
        else:
            asked = list(phrases) if phrases is not None else sorted(set(scene.labels))
        result = predict_fn(scene.image, asked)
        instances += sum(covers(phrase, label) for phrase in asked for label in scene.labels)
        matched = np.full(len(result), np.nan)
        for pred_index, gt_index in _match(result, scene, asked, iou_threshold, covers):
            matched[pred_index] = mask_ious(result.masks[[pred_index]], scene.masks[[gt_index]])[0]
        scores.append(np.asarray(result.scores, dtype=np.float64).reshape(-1))
        ious.append(matched)
    return ScoredDetections(
        np.concatenate(scores) if scores else np.zeros(0),
        np.concatenate(ious) if ious else np.zeros(0),
        instances,
    )


def _match(
    result: Result, scene: Scene, asked: list[str], threshold: float, covers: Covers = same_label
) -> Iterator[tuple[int, int]]:
    """Greedy per-phrase matching → (prediction index, ground-truth index) pairs."""
    pred_labels = np.asarray(result.labels, dtype=object)
    for label in asked:
        gt = np.array([i for i, truth in enumerate(scene.labels) if covers(label, truth)], dtype=np.int64)
        preds = np.flatnonzero(pred_labels == label)
        if not len(gt) or not len(preds):
            continue
        preds = preds[np.argsort(-result.scores[preds], kind="stable")]
        overlap = box_ious(result.boxes[preds], scene.boxes[gt])
        free = np.ones(len(gt), dtype=bool)
        for row, pred_index in enumerate(preds):
            candidates = np.where(free, overlap[row], -1.0)
            best = int(np.argmax(candidates))
            if candidates[best] >= threshold:
                free[best] = False
                yield int(pred_index), int(gt[best])


def load_scene_folder(folder: str | os.PathLike[str]) -> list[Scene]:
    """Every scene of a folder written by :func:`grounded_sam.data.write_scene_folder` (recursive, sorted).

    Raises:
        FileNotFoundError: the folder does not exist or holds no scene JSON.
    """
    root = Path(folder)
    files = sorted(root.rglob("*.json")) if root.is_dir() else []
    if not files:
        raise FileNotFoundError(f"no scene JSON files under {root}: write them with write_scene_folder")
    return [load_scene(path) for path in files]


def load_coco_scenes(annotations: str | os.PathLike[str], image_dir: str | os.PathLike[str]) -> list[Scene]:
    """Images of a COCO instances file as scenes (labels = category names; boxes from the masks).

    Segmentations may be polygons, RLE or uncompressed RLE; crowd annotations are skipped.

    Raises:
        FileNotFoundError: the annotation file or an image is missing.
    """
    from PIL import Image
    from pycocotools import mask as mask_utils

    path = Path(annotations)
    if not path.is_file():
        raise FileNotFoundError(f"no COCO annotation file at {path}")
    data = json.loads(path.read_text(encoding="utf-8"))
    names = {c["id"]: c["name"] for c in data.get("categories", [])}
    by_image: dict[int, list[dict]] = {}
    for ann in data.get("annotations", []):
        if not ann.get("iscrowd", 0):
            by_image.setdefault(ann["image_id"], []).append(ann)
    scenes = []
    for info in data.get("images", []):
        image_path = Path(image_dir) / info["file_name"]
        if not image_path.is_file():
            raise FileNotFoundError(f"{path} names the image {info['file_name']}, missing from {image_dir}")
        with Image.open(image_path) as img:
            image = np.asarray(img.convert("RGB"), dtype=np.uint8).copy()
        height, width = image.shape[:2]
        anns = by_image.get(info["id"], [])
        masks = np.zeros((len(anns), height, width), dtype=bool)
        for i, ann in enumerate(anns):
            segmentation = ann["segmentation"]
            if isinstance(segmentation, list):
                segmentation = mask_utils.merge(mask_utils.frPyObjects(segmentation, height, width))
            elif isinstance(segmentation.get("counts"), list):
                segmentation = mask_utils.frPyObjects(segmentation, height, width)
            masks[i] = mask_utils.decode(segmentation).astype(bool)
        keep = masks.reshape(len(anns), -1).any(1)
        labels = [names.get(ann["category_id"], str(ann["category_id"])) for ann in anns]
        labels = [label for label, k in zip(labels, keep, strict=True) if k]
        scenes.append(
            Scene(image, masks[keep], masks_to_boxes(masks[keep]), labels, labels, [""] * len(labels), "coco")
        )
    return scenes
