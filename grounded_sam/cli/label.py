"""``grounded-sam label``: turn a folder of images into a COCO, YOLO or mask dataset by naming classes."""

from __future__ import annotations

import functools
import os
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from grounded_sam.cli.app import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_USAGE,
    app,
    check_precision_option,
    configure_logging,
    console,
    interruptible,
    progress_bar,
    shown,
    tiling_or_exit,
)
from grounded_sam.cli.options import (
    BoxThresholdOption,
    DetectorOption,
    DeviceOption,
    PrecisionOption,
    SamOption,
    TextThresholdOption,
    TileOption,
    TileOverlapOption,
    VerboseOption,
)
from grounded_sam.labeling import (
    DATASET_FORMATS,
    DatasetBusyError,
    LabelingSummary,
    ProgressUpdate,
    label_dataset,
)
from grounded_sam.text.prompts import parse_prompt

if TYPE_CHECKING:
    from grounded_sam.labeling.rules import QualityRules

MAX_LISTED = 10  # failed images printed; all of them (and the skipped files) are in summary.json

# The options only `label` has (the shared ones are in cli/options.py).
ImagesDirArgument = Annotated[Path, typer.Argument(help="Folder of images (searched recursively).")]
DatasetOption = Annotated[Path, typer.Option("--out", "-o", help="Dataset folder (new, or one to resume).")]
ClassesOption = Annotated[
    str | None, typer.Option("--classes", "-c", help='Class names, e.g. "car, person, traffic light".')
]
OntologyOption = Annotated[
    Path | None, typer.Option(help="YAML/JSON file mapping prompts to classes (yellow taxi: car).")
]
FormatOption = Annotated[str, typer.Option("--format", "-f", help="coco, yolo, masks, label-studio or cvat.")]
SplitOption = Annotated[str, typer.Option(help='Split fractions: "0.8,0.2" (train, val[, test]).')]
SegmentationOption = Annotated[str, typer.Option(help="COCO / Label Studio masks as rle (brush) or polygon.")]
NegativeOption = Annotated[
    str | None,
    typer.Option(help='Phrases never labelled: "thermos, toy car" (drops look-alikes, mask IoU > 0.5).'),
]
AgnosticNmsOption = Annotated[
    float | None, typer.Option(help="Across classes, masks overlapping above this IoU keep the best.")
]
MinAreaOption = Annotated[float | None, typer.Option(help="Drop masks below this fraction of the image.")]
MaxAreaOption = Annotated[float | None, typer.Option(help="Drop masks above this fraction of the image.")]
MaxPerImageOption = Annotated[int | None, typer.Option(help="Keep at most this many labels per image.")]
EngineOption = Annotated[str, typer.Option(help="local, or ray to spread the work over Ray actors.")]
WorkersOption = Annotated[int, typer.Option(help="Ray actors, or I/O threads of the local engine.")]
BatchSizeOption = Annotated[int, typer.Option(help="Images per model call.")]
OverwriteOption = Annotated[bool, typer.Option(help="Replace a dataset made with other settings.")]
ContactSheetOption = Annotated[bool, typer.Option(help="Also write contact_sheet.png (overlays).")]


@app.command()
@interruptible
def label(
    images_dir: ImagesDirArgument,
    out: DatasetOption,
    classes: ClassesOption = None,
    ontology: OntologyOption = None,
    format: FormatOption = "coco",
    box_threshold: BoxThresholdOption = None,
    text_threshold: TextThresholdOption = None,
    split: SplitOption = "1",
    segmentation: SegmentationOption = "rle",
    negative: NegativeOption = None,
    agnostic_nms: AgnosticNmsOption = None,
    min_area: MinAreaOption = None,
    max_area: MaxAreaOption = None,
    max_per_image: MaxPerImageOption = None,
    engine: EngineOption = "local",
    workers: WorkersOption = 1,
    batch_size: BatchSizeOption = 4,
    overwrite: OverwriteOption = False,
    contact_sheet: ContactSheetOption = False,
    tile: TileOption = None,
    tile_overlap: TileOverlapOption = 0.2,
    sam: SamOption = None,
    detector: DetectorOption = None,
    device: DeviceOption = None,
    precision: PrecisionOption = "float32",
    verbose: VerboseOption = False,
) -> None:
    """Label every image under IMAGES_DIR with the named classes and write a dataset to OUT.

    Running the same command again resumes an interrupted run.
    """
    configure_logging(verbose)
    _check_choices(format, classes, ontology)
    tiles = tiling_or_exit(tile, tile_overlap)
    factory, model_id = _models(sam, detector, device, check_precision_option(precision))
    run = functools.partial(
        label_dataset,
        images_dir,
        classes if classes is not None else ontology,
        out,
        format=format,
        pipeline_factory=factory,
        box_threshold=box_threshold,
        text_threshold=text_threshold,
        split=split,
        segmentation=segmentation,
        rules=_rules_or_exit(negative, agnostic_nms, min_area, max_area, max_per_image),
        tiles=tiles,
        model_id=model_id,
        engine=engine,
        workers=workers,
        batch_size=batch_size,
        overwrite=overwrite,
        contact_sheet=contact_sheet,
    )
    _report(_run_with_progress(run))


def _check_choices(format: str, classes: str | None, ontology: Path | None) -> None:
    if format not in DATASET_FORMATS:
        raise typer.BadParameter(
            f"{format!r} is not one of {', '.join(DATASET_FORMATS)}", param_hint="--format"
        )
    if (classes is None) == (ontology is None):
        raise typer.BadParameter("give exactly one of --classes and --ontology", param_hint="--classes")


def _models(
    sam: str | None, detector: str | None, device: str | None, precision: str
) -> tuple[Callable[[], Any], str]:
    """The pipeline factory of the run and the models' name in the settings fingerprint."""
    from grounded_sam import api

    factory = functools.partial(api.default_pipeline, sam, detector, device, precision)
    sam_name = sam or os.environ.get(api.SAM_ENV) or api.DEMO
    detector_name = detector or os.environ.get(api.DETECTOR_ENV) or api.DEMO
    return factory, f"sam={sam_name}, detector={detector_name}"


def _rules_or_exit(
    negative: str | None,
    agnostic_nms: float | None,
    min_area: float | None,
    max_area: float | None,
    max_per_image: int | None,
) -> QualityRules:
    """The quality rules of the options, or exit 2 with why they are not valid."""
    from grounded_sam.labeling.rules import QualityRules

    try:
        return QualityRules(
            negatives=tuple(parse_prompt(negative or "")),
            agnostic_nms=agnostic_nms,
            min_area=min_area,
            max_area=max_area,
            max_per_image=max_per_image,
        )
    except ValueError as error:
        console.print(f"[red]{shown(error)}")
        raise typer.Exit(EXIT_USAGE) from None


def _run_with_progress(run: Callable[..., LabelingSummary]) -> LabelingSummary:
    """``run(progress=...)`` under a progress bar; an interruption or a usage error ends the command
    (exit 130 or 2) with what happened."""
    counts = Counter[str]()
    with progress_bar() as bar:
        task = bar.add_task("label", total=None, rate="")
        try:
            return run(progress=_progress_updater(bar, task, counts))
        except KeyboardInterrupt:
            bar.stop()
            console.print(
                f"[yellow]Interrupted.[/yellow] This run labelled {counts['done']} image(s) "
                f"({counts['failed']} failed) before stopping; nothing half-written was kept. "
                "Run the same command again to resume."
            )
            raise typer.Exit(EXIT_INTERRUPTED) from None
        except (ValueError, TypeError, OSError, ImportError, DatasetBusyError) as error:
            bar.stop()
            console.print(f"[red]{shown(error)}")
            raise typer.Exit(EXIT_USAGE) from None


def _progress_updater(bar: Any, task: Any, counts: Counter[str]) -> Callable[[ProgressUpdate], None]:
    start = [time.perf_counter()]

    def update(update: ProgressUpdate) -> None:
        if update.outcome is None:  # labelling starts now (after the model was loaded)
            start[0] = time.perf_counter()
            bar.update(task, total=update.total, completed=0)
            return
        counts[update.outcome.status] += 1
        rate = update.completed / max(time.perf_counter() - start[0], 1e-9)
        bar.update(task, completed=update.completed, rate=f"{rate:.2f} img/s")

    return update


def _report(summary: LabelingSummary) -> None:
    """Print what the run did (classes, splits, drops, failures, skipped files); exit 1 if an image failed."""
    table = Table("class", "instances", title=f"{summary.format} dataset in {shown(summary.out_dir)}")
    for name, count in summary.instances_per_class.items():
        table.add_row(shown(name), str(count))
    console.print(table)
    splits = ", ".join(f"{name} {count}" for name, count in summary.images_per_split.items())
    console.print(
        f"labelled {summary.labelled} of {summary.images} images ({splits}); "
        f"{summary.resumed} were already done; {summary.images_per_second:.2f} img/s this run"
    )
    if summary.dropped_per_rule:
        drops = ", ".join(f"{rule} {count}" for rule, count in summary.dropped_per_rule.items())
        console.print(
            f"candidates dropped by rule: {drops} (each one in {summary.out_dir / 'manifest.jsonl'})"
        )
    if summary.format == "yolo" and len(summary.images_per_split) == 1:
        console.print(
            "[yellow]one split: data.yaml's val is the training set[/yellow] (scores measured on it are "
            'not held out); pass --split "0.8,0.2" for a validation split'
        )
    for path, reason in summary.failed[:MAX_LISTED]:
        console.print(f"[red]failed[/red] {shown(path)}: {shown(reason)}")
    notes = Counter(skipped.note for skipped in summary.skipped)
    for note, count in notes.most_common():
        example = next(s.path for s in summary.skipped if s.note == note)
        console.print(f"[dim]skipped {count} file(s), e.g. {shown(example)}: {shown(note)}")
    if len(summary.failed) > MAX_LISTED or summary.skipped:
        console.print(f"every failed and skipped file is listed in {shown(summary.out_dir / 'summary.json')}")
    if summary.contact_sheet is not None:
        console.print(f"contact sheet: {shown(summary.contact_sheet)}")
    if summary.failed:
        raise typer.Exit(EXIT_FAILED)
