"""The typer application and the pieces every sub-command shares (console, progress, image lists)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from grounded_sam.io import iter_image_files
from grounded_sam.result import Result

if TYPE_CHECKING:
    from grounded_sam.pipeline import GroundedSAM

app = typer.Typer(
    name="grounded-sam",
    help="Text-prompted, open-vocabulary segmentation with Segment Anything.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console(stderr=True)


@app.callback()
def main() -> None:
    """Text-prompted, open-vocabulary segmentation with Segment Anything."""


def progress_bar() -> Progress:
    """A progress bar with count, rate and ETA, drawn on stderr."""
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeRemainingColumn(),
        console=console,
        transient=False,
    )


def expand_images(paths: Iterable[Path]) -> Iterator[Path]:
    """Files as given; folders expanded to the images below them, sorted."""
    for path in paths:
        if path.is_dir():
            yield from iter_image_files(path)
        else:
            yield path


def unique_stems(paths: list[Path]) -> list[str]:
    """An output stem per input: the file stem, numbered where two inputs share one."""
    seen: dict[str, int] = {}
    stems = []
    for path in paths:
        count = seen.get(path.stem, 0)
        seen[path.stem] = count + 1
        stems.append(path.stem if count == 0 else f"{path.stem}_{count}")
    return stems


def dataset_names(inputs: Iterable[Path], paths: Iterable[Path]) -> list[str]:
    """Each image's path relative to the folder it was found in (POSIX), or its name when given as a file:
    the ``file_name`` that points a COCO file at its image."""
    folders = [folder for folder in inputs if folder.is_dir()]
    names = []
    for path in paths:
        root = next((folder for folder in folders if path.is_relative_to(folder)), None)
        names.append(path.relative_to(root).as_posix() if root is not None else path.name)
    return names


def prompt_class_ids(classes: Sequence[str], format: str) -> dict[str, int]:
    """Class ids from the order of the prompt's phrases, the same for every image of a run: from 0 for
    YOLO, from 1 (0 is background) for the other formats."""
    start = 0 if format == "yolo" else 1
    return {name: i for i, name in enumerate(classes, start=start)}


def images_or_exit(paths: Iterable[Path]) -> list[Path]:
    """The images below ``paths``; exits with status 2 and a message when there are none."""
    found = list(expand_images(paths))
    if not found:
        console.print("[red]No images found in the given paths.")
        raise typer.Exit(2)
    return found


def pipeline_or_exit(sam: str | None, detector: str | None, device: str | None) -> GroundedSAM:
    """``default_pipeline(sam, detector, device)``; exits with status 2 and the reason (e.g. which weights
    file to put where) when the models cannot be built."""
    from grounded_sam.api import default_pipeline

    try:
        return default_pipeline(sam, detector, device)
    except (OSError, ValueError, ImportError) as error:
        console.print(f"[red]Cannot build the models:[/red] {error}")
        raise typer.Exit(2) from None


def run_per_image(
    paths: list[Path],
    description: str,
    segment: Callable[[np.ndarray], Result],
    out: Path,
    format: str,
    *,
    classes: Sequence[str],
    names: Sequence[str] | None = None,
) -> None:
    """Segment each image, save its result in ``format`` under ``out``, and show a summary table.

    Class ids come from ``classes`` (every label the run can give, in prompt order), so they are the
    same in every file; YOLO gets one ``classes.txt`` for the run. ``names`` are the images' COCO
    ``file_name`` (see :func:`dataset_names`; default: the file names). Unreadable images and per-image
    errors are reported at the end (exit status 1); the others are still processed, and every file is
    written atomically, so a failure leaves no partial output.
    """
    from grounded_sam.atomic import atomic_write_text
    from grounded_sam.export import save_result
    from grounded_sam.io import load_image

    class_ids = prompt_class_ids(classes, format)
    if format == "yolo":
        atomic_write_text(out / "classes.txt", "".join(name + "\n" for name in classes))
    names = list(names) if names is not None else [path.name for path in paths]
    table = Table("image", "instances", "labels")
    failures: list[tuple[Path, str]] = []
    with progress_bar() as bar:
        task = bar.add_task(description, total=len(paths), rate="")
        start = time.perf_counter()
        rows = zip(paths, unique_stems(paths), names, strict=True)
        for done, (path, stem, name) in enumerate(rows, start=1):
            try:
                pixels = load_image(path)
                result = segment(pixels)
                save_result(result, out, format, stem=stem, image=pixels, class_ids=class_ids, file_name=name)  # type: ignore[arg-type]
                names = sorted(set(result.labels))
                table.add_row(
                    str(path), str(len(result)), ", ".join(names[:8]) + (" ..." if len(names) > 8 else "")
                )
            except (OSError, ValueError) as error:
                failures.append((path, str(error)))
            bar.update(task, advance=1, rate=f"{done / (time.perf_counter() - start):.2f} img/s")
    console.print(table)
    for path, reason in failures:
        console.print(f"[red]failed[/red] {path}: {reason}")
    if failures:
        raise typer.Exit(1)


def configure_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )


def _register_commands() -> None:
    # Sub-command modules register themselves on `app` when imported.
    from grounded_sam.cli import app_cmd, demo, everything, inpaint, label, predict, track  # noqa: F401


_register_commands()
