"""Labelling a batch of images: load, predict, apply the quality rules, write each image's files and
then its record. The same code runs in the local engine (`run_local`) and in every Ray worker."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from grounded_sam.io import load_image
from grounded_sam.labeling.candidates import MANIFEST_FILE, append_line, manifest_line
from grounded_sam.labeling.manifest import ImageTask, LabelingSettings, Manifest
from grounded_sam.labeling.rules import apply_rules, detector_threshold, dropped_counts
from grounded_sam.labeling.state import is_output_fault
from grounded_sam.labeling.summary import ImageOutcome
from grounded_sam.labeling.writers import DatasetLayout, write_image_outputs
from grounded_sam.pipeline import GroundedSAM

logger = logging.getLogger(__name__)


def run_local(
    pipeline: GroundedSAM | None,
    layout: DatasetLayout,
    tasks: Sequence[ImageTask],
    *,
    workers: int,
    batch_size: int,
) -> Iterator[ImageOutcome]:
    """Label `tasks` in batches with one pipeline; image decoding and writing use `workers` threads."""
    if not tasks or pipeline is None:
        return
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="label-io") as pool:
        for start in range(0, len(tasks), batch_size):
            yield from label_batch(pipeline, layout, tasks[start : start + batch_size], pool.map)


def label_batch(
    pipeline: GroundedSAM,
    layout: DatasetLayout,
    tasks: Sequence[ImageTask],
    map_fn: Callable[..., Iterable[Any]] = map,
) -> list[ImageOutcome]:
    """Load, predict, write files and record, for one batch; per-image failures are recorded, not raised.

    The same function runs in the local engine and in every Ray worker.
    """
    manifest = Manifest(layout.root)
    loaded = list(map_fn(_load, tasks))
    ready = [
        (task, pixels) for task, pixels in zip(tasks, loaded, strict=True) if isinstance(pixels, np.ndarray)
    ]
    base = _base_threshold(pipeline, layout.settings)
    results = _predict(pipeline, layout.settings, [pixels for _, pixels in ready])
    predicted = dict(zip((task.rel for task, _ in ready), results, strict=True))

    def write(task_and_load: tuple[ImageTask, Any]) -> ImageOutcome:
        task, pixels = task_and_load
        outcome = predicted.get(task.rel, pixels)  # the Result, or the loading / prediction error
        if isinstance(outcome, str):
            manifest.write_record(_failed_record(task, outcome))
            logger.warning("failed to label %s: %s", task.rel, outcome)
            return ImageOutcome(task.rel, "failed", reason=outcome)
        kept, candidates = apply_rules(outcome, layout.settings.ontology, layout.settings.rules, base)
        try:
            record = write_image_outputs(layout, task, kept)
        except (ValueError, OSError) as e:  # an unsafe output path, the image gone, ...
            if is_output_fault(e):  # ... but a full or read-only disk stops the run
                raise
            manifest.write_record(_failed_record(task, str(e)))
            return ImageOutcome(task.rel, "failed", reason=str(e))
        line = manifest_line(task.rel, task.split, outcome.image_size, candidates)
        append_line(layout.path(MANIFEST_FILE), line)  # before the record, which marks the image done
        record["dropped"] = dropped_counts(candidates)
        manifest.write_record(record)
        return ImageOutcome(task.rel, "done", instances=len(record["instances"]))

    return list(map_fn(write, zip(tasks, loaded, strict=True)))


def _failed_record(task: ImageTask, reason: str) -> dict[str, Any]:
    return {"rel": task.rel, "stem": task.stem, "split": task.split, "status": "failed", "reason": reason}


def _load(task: ImageTask) -> np.ndarray | str:
    try:
        return load_image(task.source)
    except (OSError, ValueError) as e:  # FileNotFoundError, ImageLoadError, permission errors
        return f"cannot read the image: {e}"


def _predict(pipeline: GroundedSAM, settings: LabelingSettings, images: list[np.ndarray]) -> list[Any]:
    """A Result per image, or an error string; a failing batch is retried image by image to isolate it."""
    if not images:
        return []
    prompts = [*settings.ontology.prompts, *settings.rules.negatives]
    box_threshold = detector_threshold(settings.ontology, _base_threshold(pipeline, settings))
    options: dict[str, Any] = {"box_threshold": box_threshold, "text_threshold": settings.text_threshold}
    if settings.tiles is not None:
        options["tiles"] = settings.tiles
    try:
        return list(pipeline.predict_batch(images, prompts, **options))
    except Exception as e:  # a per-image boundary: any model error becomes that image's failure reason
        if len(images) == 1:
            logger.exception("the pipeline failed on an image")
            return [f"the pipeline failed: {type(e).__name__}: {e}"]
    return [outcome for image in images for outcome in _predict(pipeline, settings, [image])]


def _base_threshold(pipeline: GroundedSAM, settings: LabelingSettings) -> float | None:
    """The box threshold of classes without their own: the run's, else the detector's default."""
    if settings.box_threshold is not None:
        return settings.box_threshold
    default = getattr(pipeline.detector, "box_threshold", None)
    return float(default) if isinstance(default, (int, float)) else None
