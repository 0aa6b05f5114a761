"""Quality rules: which detected candidates of an image become labels, and why the others do not.

Every candidate (one detected phrase with its mask) is either kept or dropped by exactly one rule, the
first that applies, in this order:

1. ``negative_phrase``: it is a detection of a negative phrase (asked for, never labelled);
   ``not_in_ontology``: its phrase maps to no class.
2. ``box_threshold``: its detector score is below its class's box threshold (from the ontology, else
   the run's ``box_threshold``).
3. ``min_area`` / ``max_area``: its mask covers less / more than that fraction of the image.
4. ``negative``: its mask overlaps the mask of a better-scoring negative detection with IoU above
   `QualityRules.negative_iou` (default `NEGATIVE_IOU` = 0.5).
5. ``duplicate``: another prompt of the same class found the same object (mask IoU above
   `QualityRules.duplicate_iou`, default 0.5) with a higher score; the better one is kept.
6. ``agnostic_nms``: with `QualityRules.agnostic_nms` set, a better-scoring kept candidate of any class
   overlaps it with mask IoU above that value.
7. ``max_per_image``: it is not among the `max_per_image` best-scoring kept candidates.

Overlaps are mask IoUs computed by pycocotools on the compressed RLEs. "Better" means a higher detector
score; ties go to the earlier candidate.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from pycocotools import mask as mask_utils

from grounded_sam.labeling.ontology import Ontology
from grounded_sam.result import Result
from grounded_sam.text.prompts import parse_prompt

NEGATIVE_IOU = 0.5
DUPLICATE_IOU = 0.5
RULES: tuple[str, ...] = (
    "negative_phrase",
    "not_in_ontology",
    "box_threshold",
    "min_area",
    "max_area",
    "negative",
    "duplicate",
    "agnostic_nms",
    "max_per_image",
)


@dataclass(frozen=True)
class QualityRules:
    """Settings of the rules (see the module docstring); the defaults drop nothing but duplicates.

    Attributes:
        negatives: phrases asked for but never labelled (normalised like prompts).
        negative_iou: mask IoU above which a negative detection removes a lower-scoring candidate.
        duplicate_iou: mask IoU above which two prompts of one class count as one object.
        agnostic_nms: mask IoU above which candidates of any classes suppress each other (None: off).
        min_area, max_area: bounds on a mask's area as a fraction of the image (None: no bound).
        max_per_image: keep at most this many candidates per image (None: no limit).
    """

    negatives: tuple[str, ...] = ()
    negative_iou: float = NEGATIVE_IOU
    duplicate_iou: float = DUPLICATE_IOU
    agnostic_nms: float | None = None
    min_area: float | None = None
    max_area: float | None = None
    max_per_image: int | None = None

    def __post_init__(self) -> None:
        negatives = self.negatives
        if isinstance(negatives, str):
            negatives = parse_prompt(negatives)
        object.__setattr__(self, "negatives", tuple(p for n in negatives for p in parse_prompt(n)))
        for name in ("negative_iou", "duplicate_iou", "agnostic_nms", "min_area", "max_area"):
            value = getattr(self, name)
            if value is not None and not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must lie in [0, 1]; got {value}")
        if self.min_area is not None and self.max_area is not None and self.min_area > self.max_area:
            raise ValueError(f"min_area ({self.min_area}) must not exceed max_area ({self.max_area})")
        if self.max_per_image is not None and self.max_per_image < 1:
            raise ValueError(f"max_per_image must be at least 1; got {self.max_per_image}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready settings (only the ones that differ from the defaults)."""
        defaults = QualityRules()
        return {
            name: list(value) if isinstance(value, tuple) else value
            for name, value in vars(self).items()
            if value != getattr(defaults, name)
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> QualityRules:
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})

    def check(self, ontology: Ontology) -> None:
        """Refuse a negative phrase that is also a prompt of the ontology."""
        clash = sorted(set(self.negatives) & set(ontology.prompts))
        if clash:
            raise ValueError(f"{clash} cannot be both a prompt and a negative phrase")


@dataclass(frozen=True)
class Candidate:
    """One detection of an image and what the rules made of it.

    `rule` is None when kept; `against` (index into the image's candidates) and `iou` name the
    candidate that won an overlap rule (negative, duplicate, agnostic_nms).
    """

    phrase: str
    class_name: str | None
    score: float
    mask_score: float
    area: int
    box: tuple[float, float, float, float]
    rule: str | None = None
    against: int | None = None
    iou: float | None = None

    @property
    def kept(self) -> bool:
        return self.rule is None

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "phrase": self.phrase,
            "class": self.class_name,
            "score": round(self.score, 4),
            "mask_score": round(self.mask_score, 4),
            "area": self.area,
            "box": [round(v, 2) for v in self.box],
            "kept": self.kept,
            "rule": self.rule,
        }
        if self.against is not None:
            data["against"] = self.against
            data["iou"] = round(float(self.iou or 0.0), 4)
        return data


@dataclass
class _Verdicts:
    """Mutable working state of one `apply_rules` call."""

    rule: list[str | None]
    against: list[int | None]
    iou: list[float | None] = field(default_factory=list)

    def drop(self, i: int, rule: str, against: int | None = None, iou: float | None = None) -> None:
        self.rule[i], self.against[i], self.iou[i] = rule, against, iou

    def alive(self) -> list[int]:
        return [i for i, rule in enumerate(self.rule) if rule is None]


def apply_rules(
    result: Result, ontology: Ontology, rules: QualityRules, box_threshold: float | None = None
) -> tuple[Result, list[Candidate]]:
    """Judge every instance of `result` (labels = detected phrases) by the rules.

    Returns the kept instances (labels still the phrases) and one `Candidate` per instance of `result`,
    in its order. `box_threshold` is the run's threshold for classes without their own.
    """
    n = len(result)
    classes = [ontology.class_of(label) for label in result.labels]
    verdicts = _Verdicts([None] * n, [None] * n, [None] * n)
    negatives = set(rules.negatives)
    for i, (label, name) in enumerate(zip(result.labels, classes, strict=True)):
        if label in negatives:
            verdicts.drop(i, "negative_phrase")
        elif name is None:
            verdicts.drop(i, "not_in_ontology")
    _thresholds_and_areas(result, classes, ontology, rules, box_threshold, verdicts)
    iou = _mask_ious(result)
    negative_ids = [i for i, label in enumerate(result.labels) if label in negatives]
    for i in verdicts.alive():
        beaten = [j for j in negative_ids if iou[i, j] > rules.negative_iou and _beats(result, j, i)]
        if beaten:
            j = max(beaten, key=lambda k: iou[i, k])
            verdicts.drop(i, "negative", j, float(iou[i, j]))
    same_class = np.array([[a == b for b in classes] for a in classes], dtype=bool).reshape(n, n)
    same_prompt = np.array([[a == b for b in result.labels] for a in result.labels], dtype=bool)
    same_prompt = same_prompt.reshape(n, n)
    _suppress(result, iou, same_class & ~same_prompt, rules.duplicate_iou, "duplicate", verdicts)
    if rules.agnostic_nms is not None:
        _suppress(result, iou, np.ones((n, n), bool), rules.agnostic_nms, "agnostic_nms", verdicts)
    if rules.max_per_image is not None:
        for i in _by_score(result, verdicts.alive())[rules.max_per_image :]:
            verdicts.drop(i, "max_per_image")
    boxes, areas = result.mask_boxes(), result.areas
    candidates = [
        Candidate(
            phrase=label,
            class_name=classes[i],
            score=float(result.scores[i]),
            mask_score=float(result.mask_scores[i]),
            area=int(areas[i]),
            box=tuple(float(v) for v in boxes[i]),  # type: ignore[arg-type]
            rule=verdicts.rule[i],
            against=verdicts.against[i],
            iou=verdicts.iou[i],
        )
        for i, label in enumerate(result.labels)
    ]
    return result[np.array([c.kept for c in candidates], dtype=bool).reshape(n)], candidates


def dropped_counts(candidates: Sequence[Candidate]) -> dict[str, int]:
    """How many candidates each rule dropped (rules that dropped nothing are left out), in rule order."""
    counts = {rule: 0 for rule in RULES}
    for candidate in candidates:
        if candidate.rule is not None:
            counts[candidate.rule] += 1
    return {rule: count for rule, count in counts.items() if count}


def detector_threshold(ontology: Ontology, base: float | None) -> float | None:
    """The box threshold to ask the detector for: the lowest of `base` and the classes' own thresholds
    (so that no class misses candidates); None when nothing is set."""
    values = [t for _, t in ontology.box_thresholds] + ([base] if base is not None else [])
    return min(values) if values else None


def _thresholds_and_areas(
    result: Result,
    classes: Sequence[str | None],
    ontology: Ontology,
    rules: QualityRules,
    base: float | None,
    verdicts: _Verdicts,
) -> None:
    fractions = result.areas / float(max(result.image_size[0] * result.image_size[1], 1))
    for i in verdicts.alive():
        name = classes[i]
        threshold = ontology.box_threshold_of(name) if name is not None else None
        threshold = base if threshold is None else threshold
        if threshold is not None and result.scores[i] < threshold:
            verdicts.drop(i, "box_threshold")
        elif rules.min_area is not None and fractions[i] < rules.min_area:
            verdicts.drop(i, "min_area")
        elif rules.max_area is not None and fractions[i] > rules.max_area:
            verdicts.drop(i, "max_area")


def _suppress(
    result: Result, iou: np.ndarray, pairs: np.ndarray, threshold: float, rule: str, verdicts: _Verdicts
) -> None:
    """Greedy NMS over the living candidates, best first, among the allowed `pairs`."""
    winners: list[int] = []
    for i in _by_score(result, verdicts.alive()):
        rivals = [j for j in winners if pairs[i, j] and iou[i, j] > threshold]
        if rivals:
            j = max(rivals, key=lambda k: iou[i, k])
            verdicts.drop(i, rule, j, float(iou[i, j]))
        else:
            winners.append(i)


def _by_score(result: Result, indices: Sequence[int]) -> list[int]:
    return sorted(indices, key=lambda i: (-float(result.scores[i]), i))


def _beats(result: Result, j: int, i: int) -> bool:
    return (float(result.scores[j]), -j) > (float(result.scores[i]), -i)


def _mask_ious(result: Result) -> np.ndarray:
    """(N, N) float64 IoU of the result's masks (pycocotools on RLEs)."""
    n = len(result)
    if n == 0:
        return np.zeros((0, 0))
    rles = [{"size": r["size"], "counts": r["counts"].encode("ascii")} for r in result.rles()]
    return np.asarray(mask_utils.iou(rles, rles, [0] * n), dtype=np.float64).reshape(n, n)
