"""`label_dataset`: a folder of images + class names → a COCO, YOLO or mask dataset, resumable.

A run: check the settings against the output folder's fingerprint, list the images (sorted), skip those
whose record says done, label the rest in batches (here, or on Ray with ``engine="ray"``; each image's
files and then its record are written atomically by the worker), and finally assemble the dataset files
from the records. Killing a run at any point and running it again gives the same dataset, byte for byte.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Literal

import numpy as np

from grounded_sam.atomic import atomic_write_text
from grounded_sam.io import load_image
from grounded_sam.labeling.candidates import MANIFEST_FILE, append_line, compact_manifest, manifest_line
from grounded_sam.labeling.factory import PipelineFactory, describe_model, resolve_factory
from grounded_sam.labeling.manifest import (
    DatasetFormat,
    ImageTask,
    LabelingSettings,
    Manifest,
    ScanResult,
    Segmentation,
    scan_images,
    split_of,
)
from grounded_sam.labeling.ontology import as_ontology
from grounded_sam.labeling.rules import (
    RULES,
    QualityRules,
    apply_rules,
    detector_threshold,
    dropped_counts,
)
from grounded_sam.labeling.state import (
    dataset_lock,
    is_output_fault,
    only_unfinished_start,
    remove_atomic_temps,
    translated_faults,
)
from grounded_sam.labeling.summary import ImageOutcome, LabelingSummary, ProgressUpdate
from grounded_sam.labeling.writers import (
    DatasetLayout,
    clear_dataset,
    remove_image_outputs,
    write_dataset_files,
    write_image_outputs,
)
from grounded_sam.pipeline import GroundedSAM
from grounded_sam.tiles import Tiling, as_tiling

logger = logging.getLogger(__name__)

Engine = Literal["local", "ray"]


def label_dataset(
    images_dir: str | os.PathLike[str],
    classes_or_ontology: Any,
    out_dir: str | os.PathLike[str],
    *,
    format: DatasetFormat = "coco",
    pipeline: GroundedSAM | None = None,
    pipeline_factory: PipelineFactory | None = None,
    box_threshold: float | None = None,
    text_threshold: float | None = None,
    split: str | Sequence[float] = (1.0,),
    segmentation: Segmentation = "rle",
    rules: QualityRules | None = None,
    tiles: Tiling | int | tuple[int, float] | None = None,
    model_id: str | None = None,
    engine: Engine = "local",
    workers: int = 1,
    batch_size: int = 4,
    overwrite: bool = False,
    contact_sheet: bool = False,
    progress: Callable[[ProgressUpdate], None] | None = None,
) -> LabelingSummary:
    """Label every image under `images_dir` with the classes named by `classes_or_ontology`.

    Args:
        classes_or_ontology: "car, person", a list of names, a {prompt: class} mapping, an `Ontology`
            or a `Path` to a YAML/JSON ontology. Class ids: order of first appearance, from 0.
        format: ``coco`` (instances json per split), ``yolo`` (Ultralytics segmentation), ``masks``,
            ``label-studio`` (tasks with predictions) or ``cvat`` (CVAT for images 1.1 XML).
        pipeline / pipeline_factory: the model, or a picklable zero-argument callable that builds it (the
            Ray engine builds one per worker). Default: `grounded_sam.api.default_pipeline()`.
        split: fractions ``"0.8,0.2"`` (train, val[, test]) or ``"train=0.9,val=0.1"``.
        segmentation: COCO masks as ``rle`` or ``polygon``.
        rules: quality rules (negative phrases, agnostic NMS, area bounds, max per image; see
            `labeling.rules`). Every candidate and the rule that kept or dropped it is appended to
            ``manifest.jsonl``. Default: only duplicate labels from two prompts of one class are dropped.
        tiles: tiled prediction for large images (a `Tiling`, a tile size or (size, overlap); see
            `grounded_sam.tiles`).
        model_id: names the model in the settings fingerprint (default: derived from the pipeline).
        engine, workers, batch_size: ``local`` (one model, `workers` I/O threads) or ``ray`` (`workers`
            actors, each with its own model); images per model call.
        overwrite: replace a dataset made with other settings (only files this tool wrote are removed).
        contact_sheet: also write ``contact_sheet.png``.
        progress: called with a `ProgressUpdate` before labelling and after each image.

    Raises:
        SettingsMismatchError: `out_dir` holds a dataset with other settings and `overwrite` is False.
        DatasetBusyError: another live run is writing into `out_dir`.
        OutputFolderError: `out_dir` cannot be written (read-only, no permission, disk full); the same
            call resumes once that is fixed (see `labeling.state`).

    Example::

        summary = label_dataset(
            "photos", "car, person, traffic light", "dataset", format="yolo", split="0.8,0.2"
        )
    """
    started = time.perf_counter()
    images_root, out = Path(images_dir), Path(out_dir)
    if not images_root.is_dir():
        raise FileNotFoundError(f"image folder {images_root} does not exist (or is not a folder)")
    if workers < 1 or batch_size < 1:
        raise ValueError(f"workers and batch_size must be >= 1; got {workers} and {batch_size}")
    if engine not in ("local", "ray"):
        raise ValueError(f"engine must be 'local' or 'ray'; got {engine!r}")
    factory = resolve_factory(pipeline, pipeline_factory)
    settings = LabelingSettings(
        ontology=as_ontology(classes_or_ontology),
        format=format,
        splits=split,  # type: ignore[arg-type]  # parsed and checked by LabelingSettings
        box_threshold=box_threshold,
        text_threshold=text_threshold,
        model=model_id or describe_model(pipeline, pipeline_factory),
        segmentation=segmentation,
        rules=rules or QualityRules(),
        tiles=None if tiles is None else (as_tiling(tiles).size, as_tiling(tiles).overlap),
    )
    layout = DatasetLayout(out, settings)
    with dataset_lock(out), translated_faults(out):  # the states of labeling.state
        manifest = prepare_output(images_root, layout, overwrite)
        records = manifest.read_records()
        known = manifest.known_stems(records)  # a resumed run keeps every image's name
        scan = scan_images(images_root, settings.splits, exclude=out, known=known)
        records = _forget_vanished(layout, manifest, scan, records, known)
        pending = [t for t in scan.tasks if records.get(t.rel, {}).get("status") != "done"]
        resumed = len(scan.tasks) - len(pending)
        logger.info("%d images, %d already labelled, %d to do", len(scan.tasks), resumed, len(pending))
        if engine == "ray":
            from grounded_sam.labeling.ray_engine import run_ray

            outcomes = run_ray(factory, layout, pending, workers=workers, batch_size=batch_size)
        else:
            model = factory() if pending else None  # built before the clock of the progress bar starts
            outcomes = run_local(model, layout, pending, workers=workers, batch_size=batch_size)
        notify = progress or (lambda update: None)
        notify(ProgressUpdate(0, len(pending), None))
        for completed, outcome in enumerate(outcomes, start=1):
            notify(ProgressUpdate(completed, len(pending), outcome))
        elapsed = time.perf_counter() - started
        for task in pending:  # only this run's records are read again: the rest are already known
            record = manifest.read_record(task.rel)
            if record is not None:
                records[task.rel] = record
        return finish(layout, records, scan, resumed, elapsed, len(pending), contact_sheet)


def prepare_output(images_root: Path, layout: DatasetLayout, overwrite: bool) -> Manifest:
    """Check `layout.root` against the settings (resume, refuse or clear) and store the settings.

    Call it holding the folder's lock (`labeling.state.dataset_lock`): it deletes stale temporary files.
    """
    out = layout.root
    if images_root.resolve().is_relative_to(out.resolve()):
        raise ValueError(f"the output folder {out} must not contain the image folder {images_root}")
    manifest = Manifest(out)
    if manifest.exists():
        if overwrite:
            old = manifest.stored_settings()
            logger.info("overwrite: removing the dataset in %s", out)
            clear_dataset(DatasetLayout(out, old), manifest.known_stems(manifest.read_records()))
        else:
            manifest.check_settings(layout.settings)
            remove_atomic_temps(out)
    elif out.exists() and only_unfinished_start(out):  # a first run killed before its settings were written
        remove_atomic_temps(out)
    elif out.exists() and any(out.iterdir()):
        raise ValueError(
            f"{out} is not empty and holds no dataset written by grounded-sam label; choose a new or empty "
            "output folder (--overwrite only replaces datasets written by this tool)"
        )
    manifest.write_settings(layout.settings)
    return manifest


def _forget_vanished(
    layout: DatasetLayout,
    manifest: Manifest,
    scan: ScanResult,
    records: dict[str, dict[str, Any]],
    known: dict[str, str],
) -> dict[str, dict[str, Any]]:
    """Remove the outputs and records of images no longer in the folder (`known`: rel -> stem of every
    image named before), plan the current ones, and return the records of the current images."""
    current = {t.rel: t.stem for t in scan.tasks}
    holders = {t.stem: t for t in scan.tasks}
    for rel in sorted(set(known) - set(current)):
        logger.info("%s is no longer in the image folder; removing its labels", rel)
        holder = holders.get(known[rel])  # a current image that took over the stem keeps its files
        keep = layout.outputs(holder.rel, holder.split, holder.stem) if holder else []
        remove_image_outputs(layout, rel, split_of(rel, layout.settings.splits), known[rel], keep=keep)
        manifest.remove_record(rel)
        records.pop(rel, None)
    manifest.write_plan(current)
    return records


def finish(
    layout: DatasetLayout,
    records: dict[str, dict[str, Any]],
    scan: ScanResult,
    resumed: int,
    elapsed: float,
    processed: int,
    want_sheet: bool,
) -> LabelingSummary:
    """Assemble the dataset files and ``summary.json`` from the `records` of the images of `scan`;
    return the summary."""
    files = write_dataset_files(layout, scan.tasks, records)
    done = [t for t in scan.tasks if records.get(t.rel, {}).get("status") == "done"]
    done_rels = {t.rel for t in done}
    failed = tuple(
        (t.rel, str(records.get(t.rel, {}).get("reason", "not labelled")))
        for t in scan.tasks
        if t.rel not in done_rels
    )
    per_class = Counter(inst["class"] for t in done for inst in records[t.rel]["instances"])
    per_split = Counter(t.split for t in done)
    compact_manifest(layout.path(MANIFEST_FILE), [t.rel for t in done])
    per_rule = Counter({rule: 0 for rule in RULES})
    for task in done:
        per_rule.update(records[task.rel].get("dropped", {}))
    sheet = None
    if want_sheet:
        from grounded_sam.labeling.contact_sheet import dataset_contact_sheet

        sheet = dataset_contact_sheet(layout, scan.tasks, records)
    summary = LabelingSummary(
        out_dir=layout.root,
        format=layout.settings.format,
        images=len(scan.tasks),
        labelled=len(done),
        resumed=resumed,
        failed=failed,
        skipped=tuple(scan.skipped),
        instances_per_class={name: per_class.get(name, 0) for name in layout.settings.ontology.class_names},
        images_per_split={name: per_split.get(name, 0) for name in layout.settings.split_names},
        elapsed=elapsed,
        images_per_second=processed / elapsed if elapsed > 0 else 0.0,
        contact_sheet=sheet,
        files=tuple(files),
        dropped_per_rule={rule: count for rule, count in per_rule.items() if count},
    )
    atomic_write_text(layout.path("summary.json"), json.dumps(summary.to_dict(), indent=1))
    return summary


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
