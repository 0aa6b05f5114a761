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
from pathlib import Path
from typing import Any, Literal

from grounded_sam.atomic import atomic_write_text
from grounded_sam.labeling.batch import run_local
from grounded_sam.labeling.candidates import MANIFEST_FILE, compact_manifest
from grounded_sam.labeling.factory import PipelineFactory, describe_model, resolve_factory
from grounded_sam.labeling.manifest import (
    DatasetFormat,
    ImageTask,
    LabelingSettings,
    Manifest,
    Segmentation,
    split_of,
)
from grounded_sam.labeling.ontology import as_ontology
from grounded_sam.labeling.rules import RULES, QualityRules
from grounded_sam.labeling.scan import ScanResult, scan_images
from grounded_sam.labeling.state import (
    assembled_files,
    clear_assembled,
    dataset_lock,
    mark_assembled,
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
        format, box_threshold, text_threshold, split, segmentation, rules, tiles: the run's
            `LabelingSettings` (see there); `split` as ``"0.8,0.2"`` (train, val[, test]) or
            ``"train=0.9,val=0.1"``, `tiles` as a `Tiling`, a tile size or (size, overlap). Every
            candidate and the rule that kept or dropped it is appended to ``manifest.jsonl``.
        pipeline / pipeline_factory: the model, or a picklable zero-argument callable that builds it (the
            Ray engine builds one per worker). Default: `grounded_sam.api.default_pipeline()`.
        model_id: names the model in the settings fingerprint (default: derived from the pipeline).
        engine, workers, batch_size: ``local`` (one model, `workers` I/O threads) or ``ray`` (`workers`
            actors, each with its own model); images per model call.
        overwrite: replace a dataset made with other settings (only files this tool wrote are removed).
        contact_sheet, progress: also write ``contact_sheet.png``; called with a `ProgressUpdate`.

    Raises `SettingsMismatchError` (other settings in `out_dir`, no `overwrite`), `DatasetBusyError`
    (another live run writes there), `OutputFolderError` (not writable; resumes once fixed, `labeling.state`).
    """
    started = time.perf_counter()
    images_root, out = Path(images_dir), Path(out_dir)
    _check_run(images_root, engine, workers, batch_size)
    factory = resolve_factory(pipeline, pipeline_factory)
    model = model_id or describe_model(pipeline, pipeline_factory)
    settings = _settings(
        classes_or_ontology, format, split, box_threshold, text_threshold, model, segmentation, rules, tiles
    )
    layout = DatasetLayout(out, settings)
    with dataset_lock(out), translated_faults(out):  # the states of labeling.state
        manifest = prepare_output(images_root, layout, overwrite)
        scan, records, pending = _plan(images_root, layout, manifest)
        outcomes = _label_tasks(factory, layout, pending, engine, workers=workers, batch_size=batch_size)
        _report(outcomes, len(pending), progress)
        elapsed = time.perf_counter() - started
        records.update(_records_of(manifest, pending))  # only this run's: the rest are already known
        return finish(layout, records, scan, len(pending), elapsed, contact_sheet)


def _settings(
    classes_or_ontology: Any,
    format: DatasetFormat,
    split: str | Sequence[float],
    box_threshold: float | None,
    text_threshold: float | None,
    model: str,
    segmentation: Segmentation,
    rules: QualityRules | None,
    tiles: Tiling | int | tuple[int, float] | None,
) -> LabelingSettings:
    tiling = None if tiles is None else as_tiling(tiles)
    return LabelingSettings(
        ontology=as_ontology(classes_or_ontology),
        format=format,
        splits=split,  # type: ignore[arg-type]  # parsed and checked by LabelingSettings
        box_threshold=box_threshold,
        text_threshold=text_threshold,
        model=model,
        segmentation=segmentation,
        rules=rules or QualityRules(),
        tiles=None if tiling is None else (tiling.size, tiling.overlap),
    )


def _check_run(images_root: Path, engine: str, workers: int, batch_size: int) -> None:
    if not images_root.is_dir():
        raise FileNotFoundError(f"image folder {images_root} does not exist (or is not a folder)")
    if workers < 1 or batch_size < 1:
        raise ValueError(f"workers and batch_size must be >= 1; got {workers} and {batch_size}")
    if engine not in ("local", "ray"):
        raise ValueError(f"engine must be 'local' or 'ray'; got {engine!r}")


def _plan(
    images_root: Path, layout: DatasetLayout, manifest: Manifest
) -> tuple[ScanResult, dict[str, dict[str, Any]], list[ImageTask]]:
    """The images of the folder, the records of those (forgetting vanished ones), and the tasks not done."""
    records = manifest.read_records()
    known = manifest.known_stems(records)  # a resumed run keeps every image's name
    scan = scan_images(images_root, layout.settings.splits, exclude=layout.root, known=known)
    records = _forget_vanished(layout, manifest, scan, records, known)
    pending = [t for t in scan.tasks if records.get(t.rel, {}).get("status") != "done"]
    if pending:  # records and outputs are about to change: the dataset files are no longer up to date
        clear_assembled(layout.root)
    resumed = len(scan.tasks) - len(pending)
    logger.info("%d images, %d already labelled, %d to do", len(scan.tasks), resumed, len(pending))
    return scan, records, pending


def _label_tasks(
    factory: PipelineFactory,
    layout: DatasetLayout,
    pending: list[ImageTask],
    engine: Engine,
    *,
    workers: int,
    batch_size: int,
) -> Iterator[ImageOutcome]:
    """The outcomes of labelling `pending`, on Ray actors or here, as they finish."""
    if engine == "ray":
        from grounded_sam.labeling.ray_engine import run_ray

        return run_ray(factory, layout, pending, workers=workers, batch_size=batch_size)
    model = factory() if pending else None  # built before the clock of the progress bar starts
    return run_local(model, layout, pending, workers=workers, batch_size=batch_size)


def _report(
    outcomes: Iterable[ImageOutcome], total: int, progress: Callable[[ProgressUpdate], None] | None
) -> None:
    """Run `outcomes` to the end, telling `progress` before the first and after each."""
    notify = progress or (lambda update: None)
    notify(ProgressUpdate(0, total, None))
    for completed, outcome in enumerate(outcomes, start=1):
        notify(ProgressUpdate(completed, total, outcome))


def _records_of(manifest: Manifest, tasks: Iterable[ImageTask]) -> dict[str, dict[str, Any]]:
    records = {task.rel: manifest.read_record(task.rel) for task in tasks}
    return {rel: record for rel, record in records.items() if record is not None}


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
    vanished = sorted(set(known) - set(current))
    if vanished:
        clear_assembled(layout.root)
    for rel in vanished:
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
    processed: int,
    elapsed: float,
    want_sheet: bool,
) -> LabelingSummary:
    """Assemble the dataset files and ``summary.json`` from the `records` of the images of `scan`
    (`processed` of them labelled by this run, the others before); return the summary.

    A run that changed nothing (no image labelled or forgotten) over a finished dataset whose files are
    all there writes nothing: its summary is computed, ``summary.json`` keeps the run that made the
    dataset (see `labeling.state`)."""
    out, fingerprint = layout.root, layout.settings.fingerprint
    done = [t for t in scan.tasks if records.get(t.rel, {}).get("status") == "done"]
    files = None if processed else assembled_files(out, fingerprint)
    fresh = files is None or not layout.path("summary.json").is_file()
    if fresh:
        files = write_dataset_files(layout, scan.tasks, records)
        compact_manifest(layout.path(MANIFEST_FILE), [t.rel for t in done])
    sheet_path = layout.path("contact_sheet.png")
    sheet = None
    if want_sheet:
        from grounded_sam.labeling.contact_sheet import dataset_contact_sheet

        sheet = sheet_path if sheet_path in files else dataset_contact_sheet(layout, scan.tasks, records)
    dataset_files = [f for f in files if f != sheet_path]
    summary = _summary(layout, records, scan, done, processed, elapsed, sheet, dataset_files)
    if fresh:
        atomic_write_text(layout.path("summary.json"), json.dumps(summary.to_dict(), indent=1))
    if fresh or (sheet is not None and sheet_path not in files):
        mark_assembled(out, fingerprint, [*dataset_files, *([sheet] if sheet else [])])
    return summary


def _summary(
    layout: DatasetLayout,
    records: dict[str, dict[str, Any]],
    scan: ScanResult,
    done: Sequence[ImageTask],
    processed: int,
    elapsed: float,
    sheet: Path | None,
    files: Sequence[Path],
) -> LabelingSummary:
    """The run's summary from the records (`done`: the tasks of `scan` whose record says done)."""
    done_rels = {t.rel for t in done}
    failed = tuple(
        (t.rel, str(records.get(t.rel, {}).get("reason", "not labelled")))
        for t in scan.tasks
        if t.rel not in done_rels
    )
    per_class = Counter(inst["class"] for t in done for inst in records[t.rel]["instances"])
    per_split = Counter(t.split for t in done)
    per_rule = Counter({rule: 0 for rule in RULES})
    for task in done:
        per_rule.update(records[task.rel].get("dropped", {}))
    return LabelingSummary(
        out_dir=layout.root,
        format=layout.settings.format,
        images=len(scan.tasks),
        labelled=len(done),
        resumed=len(scan.tasks) - processed,
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
