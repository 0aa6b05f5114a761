"""Review of a labelled dataset: a person approves, rejects, relabels or adds instances, image by image,
most doubtful first; the reviewed labels are exported as a new dataset.

Decisions go to ``<dataset>/review.jsonl``, one line per decision appended atomically as it is made
(`labeling.candidates.append_line`), so a crash loses at most the decision in flight; reopening replays
the file (the last decision on an instance wins) and starts at the first image with undecided instances.
A line is ``{"rel", "index", "action", "class"}`` with action ``approve``, ``reject``, ``relabel`` (a new
class, which also approves), ``add`` (a new instance from a phrase or a click, approved, with its
``mask`` RLE, ``box``, ``score`` and ``via``) or ``refine`` (instance ``index`` re-drawn by SAM from the
clicks on it, approved, with its new ``mask`` RLE, ``box``, ``mask_score`` and every click so far in
``points``: ``[x, y, 1 adds / 0 removes]``). Instance indices are the record's order; added ones follow.

Doubt of an image (lower = reviewed first): the lowest detector score among its labels, or, when a
candidate the rules dropped scored higher than every label was sure, 1 - that candidate's score (a
close call: e.g. a duplicate or negative with a high score). Images without labels or candidates: 1.

Export (`ReviewSession.export`) writes approved and relabelled instances and added ones; unreviewed
instances only with ``include_unreviewed=True`` (``--include-unreviewed``); rejected ones never.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from grounded_sam.labeling.candidates import MANIFEST_FILE, append_line, iter_lines, read_manifest
from grounded_sam.labeling.manifest import DatasetFormat, ImageTask, LabelingSettings, Manifest
from grounded_sam.labeling.writers import DatasetLayout, write_dataset_files, write_image_outputs
from grounded_sam.ops.boxes import masks_to_boxes
from grounded_sam.ops.rle import mask_to_rle, rle_to_mask
from grounded_sam.result import Result

REVIEW_FILE = "review.jsonl"
Action = Literal["approve", "reject", "relabel", "add", "refine"]
Status = Literal["unreviewed", "approved", "rejected"]
EXPORT_FORMATS: tuple[str, ...] = ("coco", "yolo", "masks")
_IGNORED_DROPS = ("negative_phrase", "not_in_ontology")  # never labels, so never close calls


@dataclass(frozen=True)
class ReviewInstance:
    """One instance of an image as the review sees it (`mask` is a COCO RLE; `box` XYXY pixels)."""

    index: int
    class_name: str
    score: float
    mask_score: float
    box: tuple[float, ...]
    mask: dict[str, Any]
    status: Status = "unreviewed"
    origin: str = "label"
    points: tuple[tuple[float, float, int], ...] = ()  # clicks that refined it: (x, y, 1 add / 0 remove)


class ReviewSession:
    """The review state of one dataset folder written by ``grounded-sam label``.

    Example::

        session = ReviewSession("dataset")
        rel = session.images[session.first_open()]
        session.decide(rel, 0, "approve")
        session.export("reviewed", "coco")
    """

    def __init__(self, dataset: str | os.PathLike[str]) -> None:
        self.root = Path(dataset)
        manifest = Manifest(self.root)
        if not manifest.exists():
            raise FileNotFoundError(f"{self.root} holds no dataset written by grounded-sam label")
        self.settings: LabelingSettings = manifest.stored_settings()
        self.records = {
            rel: r for rel, r in sorted(manifest.read_records().items()) if r.get("status") == "done"
        }
        lines = read_manifest(self.root / MANIFEST_FILE)
        self._instances = {rel: _instances(record) for rel, record in self.records.items()}
        for line in iter_lines(self.root / REVIEW_FILE):
            self._apply(line)
        self.doubt = {rel: image_doubt(self._instances[rel], lines.get(rel)) for rel in self.records}
        self.images: list[str] = sorted(self.records, key=lambda rel: (self.doubt[rel], rel))

    @property
    def class_names(self) -> tuple[str, ...]:
        return self.settings.ontology.class_names

    def instances(self, rel: str) -> list[ReviewInstance]:
        return list(self._instances[rel])

    def image_path(self, rel: str) -> Path:
        layout = DatasetLayout(self.root, self.settings)
        record = self.records[rel]
        return layout.path(layout.image_file(rel, record["split"], record.get("stem")))

    def result(self, rel: str, *, statuses: Sequence[Status] = ("unreviewed", "approved")) -> Result:
        """The instances of `rel` with one of `statuses` as a `Result` (labels: class names)."""
        chosen = [inst for inst in self._instances[rel] if inst.status in statuses]
        size = (int(self.records[rel]["height"]), int(self.records[rel]["width"]))
        if not chosen:
            return Result.empty(size)
        return Result(
            masks=np.stack([rle_to_mask(inst.mask) for inst in chosen]),
            boxes=np.array([inst.box for inst in chosen], dtype=np.float32),
            labels=[inst.class_name for inst in chosen],
            scores=[inst.score for inst in chosen],
            mask_scores=[inst.mask_score for inst in chosen],
            image_size=size,
        )

    def first_open(self) -> int:
        """Position in `images` of the first image with an undecided instance (0 when all are decided)."""
        for position, rel in enumerate(self.images):
            if any(inst.status == "unreviewed" for inst in self._instances[rel]):
                return position
        return 0

    def progress(self) -> tuple[int, int]:
        """(decided instances, all instances) over the dataset."""
        every = [inst for found in self._instances.values() for inst in found]
        return sum(inst.status != "unreviewed" for inst in every), len(every)

    def decide(self, rel: str, index: int, action: Action, class_name: str | None = None) -> None:
        """Record one decision on instance `index` of image `rel` (saved before the state changes)."""
        if action not in ("approve", "reject", "relabel"):
            raise ValueError(f"action must be approve, reject or relabel; got {action!r}")
        current = self._instance(rel, index)
        name = class_name if action == "relabel" else current.class_name
        self._check_class(name)
        self._save({"rel": rel, "index": index, "action": action, "class": name})

    def add(self, rel: str, result: Result, class_name: str, via: str) -> list[int]:
        """Add every instance of `result` (a re-prompt of image `rel`) as approved `class_name`; returns
        their indices. `via` says how they were found ("phrase: ...", "click x,y")."""
        self._check_class(class_name)
        added = []
        for inst, box in zip(result, result.mask_boxes(), strict=True):
            index = len(self._instances[rel])
            mask = mask_to_rle(inst.mask)
            line = {"rel": rel, "index": index, "action": "add", "class": class_name, "via": via}
            line |= {"mask": mask, "box": [float(v) for v in box], "score": inst.score}
            self._save({**line, "mask_score": inst.mask_score})
            added.append(index)
        return added

    def refine(
        self, rel: str, index: int, mask: np.ndarray, mask_score: float, points: Sequence[Sequence[float]]
    ) -> None:
        """Replace the mask of instance `index` of image `rel` by `mask` ((H, W) bool, SAM's decode of
        the clicks `points` = (x, y, 1 add / 0 remove) on it), its box by the mask's; approves it."""
        current = self._instance(rel, index)
        box = masks_to_boxes(mask[None])[0] if mask.any() else np.asarray(current.box)
        clicks = [[float(x), float(y), int(label)] for x, y, label in points]
        line = {"rel": rel, "index": index, "action": "refine", "class": current.class_name}
        line |= {"mask": mask_to_rle(mask), "box": [float(v) for v in box], "mask_score": float(mask_score)}
        self._save({**line, "points": clicks})

    def export(
        self,
        out: str | os.PathLike[str],
        format: DatasetFormat = "coco",
        *,
        include_unreviewed: bool = False,
    ) -> list[Path]:
        """Write the reviewed dataset to the new or empty folder `out` in ``coco``, ``yolo`` or
        ``masks``, with the labelling run's splits; returns the dataset-level files written."""
        if format not in EXPORT_FORMATS:
            raise ValueError(f"review export format must be one of {EXPORT_FORMATS}; got {format!r}")
        target = Path(out)
        if target.exists() and any(target.iterdir()):
            raise ValueError(f"{target} is not empty; export the review into a new or empty folder")
        settings = dataclasses.replace(self.settings, format=format)
        layout = DatasetLayout(target, settings)
        prompt_of = {
            name: settings.ontology.prompts[settings.ontology.classes.index(name)]
            for name in self.class_names
        }
        statuses: tuple[Status, ...] = ("approved", "unreviewed") if include_unreviewed else ("approved",)
        tasks, records = [], {}
        for image_id, rel in enumerate(sorted(self.records), start=1):
            split, stem = self.records[rel]["split"], self.records[rel].get("stem", "")
            task = ImageTask(rel, str(self.image_path(rel)), split, image_id, stem)
            kept = self.result(rel, statuses=statuses)
            as_prompts = kept.with_labels([prompt_of[n] for n in kept.labels])
            records[rel] = write_image_outputs(layout, task, as_prompts)
            tasks.append(task)
        return write_dataset_files(layout, tasks, records)

    def _save(self, line: dict[str, Any]) -> None:
        append_line(self.root / REVIEW_FILE, line)
        self._apply(line)

    def _apply(self, line: dict[str, Any]) -> None:
        found = self._instances.get(line.get("rel", ""))
        if found is None:
            return  # an image no longer in the dataset
        action, index = line.get("action"), int(line.get("index", -1))
        if action == "add" and index == len(found):
            found.append(
                ReviewInstance(
                    index=index,
                    class_name=line["class"],
                    score=float(line["score"]),
                    mask_score=float(line["mask_score"]),
                    box=tuple(line["box"]),
                    mask=line["mask"],
                    status="approved",
                    origin=str(line.get("via", "added")),
                )
            )
        elif action == "refine" and 0 <= index < len(found):
            found[index] = dataclasses.replace(
                found[index],
                mask=line["mask"],
                box=tuple(float(v) for v in line["box"]),
                mask_score=float(line["mask_score"]),
                points=tuple((float(x), float(y), int(label)) for x, y, label in line["points"]),
                status="approved",
            )
        elif action in ("approve", "relabel", "reject") and 0 <= index < len(found):
            status: Status = "rejected" if action == "reject" else "approved"
            found[index] = dataclasses.replace(found[index], status=status, class_name=line["class"])

    def _instance(self, rel: str, index: int) -> ReviewInstance:
        if rel not in self._instances:
            raise KeyError(f"{rel!r} is not a labelled image of {self.root}")
        if not 0 <= index < len(self._instances[rel]):
            raise IndexError(f"{rel} has no instance {index}")
        return self._instances[rel][index]

    def _check_class(self, name: str | None) -> None:
        if name not in self.class_names:
            raise ValueError(f"{name!r} is not a class of this dataset ({', '.join(self.class_names)})")


def image_doubt(instances: Sequence[ReviewInstance], line: dict[str, Any] | None) -> float:
    """Lower is more doubtful: see the module docstring."""
    kept = [inst.score for inst in instances if inst.origin == "label"]
    dropped = [
        float(c["score"])
        for c in (line or {}).get("candidates", [])
        if not c.get("kept") and c.get("rule") not in _IGNORED_DROPS
    ]
    return min([*kept, *(1.0 - s for s in dropped), 1.0])


def _instances(record: dict[str, Any]) -> list[ReviewInstance]:
    return [
        ReviewInstance(
            index=i,
            class_name=inst["class"],
            score=float(inst["score"]),
            mask_score=float(inst["mask_score"]),
            box=tuple(float(v) for v in inst["box"]),
            mask=inst["mask"],
        )
        for i, inst in enumerate(record.get("instances", []))
    ]
