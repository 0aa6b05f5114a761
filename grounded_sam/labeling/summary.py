"""What a labelling run reports: per-image outcomes, progress updates and the final summary."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from grounded_sam.labeling.manifest import DatasetFormat
from grounded_sam.labeling.scan import SkippedFile


@dataclass(frozen=True)
class ImageOutcome:
    """What happened to one image: ``done`` (with its instance count) or ``failed`` (with the reason)."""

    rel: str
    status: Literal["done", "failed"]
    instances: int = 0
    reason: str = ""


@dataclass(frozen=True)
class ProgressUpdate:
    """Sent to a progress callback once before labelling (outcome None) and after every image."""

    completed: int
    total: int
    outcome: ImageOutcome | None


@dataclass(frozen=True)
class LabelingSummary:
    """The result of a run (over the whole dataset, including images labelled by earlier runs).

    Attributes:
        out_dir: the dataset folder.
        images: images found; labelled + failed.
        labelled: images with labels in the dataset; `resumed` of them were done by earlier runs.
        failed: (relative path, reason) of images that could not be labelled.
        skipped: files of the image folder that were not images, or not safe to read.
        instances_per_class: number of instances of each class, in class-id order.
        images_per_split: labelled images in each split.
        elapsed: seconds spent in this run; images_per_second: images labelled by this run per second.
        contact_sheet: path of the contact sheet, when one was requested and written.
        files: the dataset-level files written (COCO json per split, data.yaml or classes.json).
        dropped_per_rule: candidates each quality rule dropped (`labeling.rules`), over labelled images.
    """

    out_dir: Path
    format: DatasetFormat
    images: int
    labelled: int
    resumed: int
    failed: tuple[tuple[str, str], ...]
    skipped: tuple[SkippedFile, ...]
    instances_per_class: dict[str, int]
    images_per_split: dict[str, int]
    elapsed: float = 0.0
    images_per_second: float = 0.0
    contact_sheet: Path | None = None
    files: tuple[Path, ...] = field(default_factory=tuple)
    dropped_per_rule: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The run-independent part, as written to ``summary.json`` (no timings, no resume counts)."""
        return {
            "format": self.format,
            "images": self.images,
            "labelled": self.labelled,
            "failed": [{"path": path, "reason": reason} for path, reason in self.failed],
            "skipped": [{"path": s.path, "note": s.note} for s in self.skipped],
            "instances_per_class": self.instances_per_class,
            "images_per_split": self.images_per_split,
            "dropped_per_rule": self.dropped_per_rule,
        }
