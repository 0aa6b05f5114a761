"""The typer application and the pieces every sub-command shares (console, progress, image lists)."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from pathlib import Path

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from grounded_sam.io import iter_image_files

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


def configure_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )


def _register_commands() -> None:
    # Sub-command modules register themselves on `app` when imported.
    from grounded_sam.cli import app_cmd, demo, everything, inpaint, label, predict  # noqa: F401


_register_commands()
