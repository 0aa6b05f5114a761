"""The typer application and the pieces every sub-command shares (console, progress, image lists)."""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import re
import signal
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from grounded_sam.atomic import atomic_write_text
from grounded_sam.devices import PRECISION_REQUESTS
from grounded_sam.io import iter_image_files
from grounded_sam.naming import output_stems, printable
from grounded_sam.result import Result

if TYPE_CHECKING:
    from grounded_sam.pipeline import GroundedSAM
    from grounded_sam.tiles import Tiling

app = typer.Typer(
    name="grounded-sam",
    help="Text-prompted, open-vocabulary segmentation with Segment Anything.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console(stderr=True)

# Exit statuses, the same for every command (README, "Exit statuses").
EXIT_OK = 0
EXIT_FAILED = 1  # the command ran, but some images failed (or, for inpaint, nothing was found)
EXIT_USAGE = 2  # nothing was done: bad arguments, missing inputs, models or output folder unusable
EXIT_INTERRUPTED = 130  # Ctrl-C (SIGINT) or SIGTERM; what was finished is kept
MANIFEST = "manifest.json"
RESERVED = frozenset({"manifest", "classes"})  # output stems taken by the command's own files


def shown(text: object) -> str:
    """User text (file names, prompts, class names, error messages) ready for `console.print`: rich
    markup escaped, bytes that are not UTF-8 and control characters made visible (`printable`)."""
    return escape(printable(str(text)))


def check_precision_option(precision: str) -> str:
    """``precision`` if it is one of :data:`~grounded_sam.devices.PRECISION_REQUESTS`, else a usage error."""
    if precision not in PRECISION_REQUESTS:
        raise typer.BadParameter(
            f"{precision!r} is not {', '.join(PRECISION_REQUESTS)}", param_hint="--precision"
        )
    return precision


@app.callback()
def main() -> None:
    """Text-prompted, open-vocabulary segmentation with Segment Anything."""


@contextlib.contextmanager
def interrupt_on_sigterm() -> Iterator[None]:
    """Within the block, SIGTERM stops the run as Ctrl-C does (the images in flight are finished or
    dropped, nothing half-written is kept); the previous handler is restored afterwards."""

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    if threading.current_thread() is not threading.main_thread():  # e.g. under a test runner thread
        yield
        return
    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def interruptible(command: Callable[..., None]) -> Callable[..., None]:
    """Decorate a command: SIGTERM stops it as Ctrl-C does, and either ends it with exit status 130 and a
    note (files already written are complete: every write is atomic)."""

    @functools.wraps(command)
    def run(*args: Any, **kwargs: Any) -> None:
        with interrupt_on_sigterm():
            try:
                command(*args, **kwargs)
            except KeyboardInterrupt:
                note = "Files already written are complete; no partial file was kept."
                console.print(f"[yellow]Interrupted.[/yellow] {note}")
                raise typer.Exit(EXIT_INTERRUPTED) from None

    return run


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


@dataclass(frozen=True)
class InputImage:
    """An image to process: where it is, and its path relative to the folder it was found in (a file
    given directly: its name), from which its outputs are named (`grounded_sam.naming`)."""

    path: Path
    rel: str


def find_images(paths: Iterable[Path]) -> tuple[list[InputImage], list[tuple[str, str]]]:
    """Files as given; folders expanded to the images below them, sorted. Also returns the files left
    out, with the reason: symbolic links below a folder that lead out of it are not followed."""
    found: list[InputImage] = []
    skipped: list[tuple[str, str]] = []
    for path in paths:
        if not path.exists():  # said before any model loads
            raise FileNotFoundError(f"No such file or folder: {path}")
        if not path.is_dir():
            found.append(InputImage(path, path.name))
            continue
        root = path.resolve()
        for image in iter_image_files(path):
            rel = image.relative_to(path).as_posix()
            if image.is_symlink() and not image.resolve().is_relative_to(root):
                skipped.append((str(image), "symbolic link to a file outside the folder; not followed"))
            else:
                found.append(InputImage(image, rel))
    return found, skipped


def prompt_class_ids(classes: Sequence[str], format: str) -> dict[str, int]:
    """Class ids from the order of the prompt's phrases, the same for every image of a run: from 0 for
    YOLO, from 1 (0 is background) for the other formats."""
    start = 0 if format == "yolo" else 1
    return {name: i for i, name in enumerate(classes, start=start)}


def images_or_exit(paths: Iterable[Path]) -> list[InputImage]:
    """The images below ``paths`` (skipped files reported); exits with status 2 and a message when there
    are none or a path does not exist."""
    try:
        found, skipped = find_images(paths)
    except (OSError, ValueError) as error:
        console.print(f"[red]{shown(error)}")
        raise typer.Exit(EXIT_USAGE) from None
    for path, note in skipped:
        console.print(f"[dim]skipped {shown(path)}: {note}")
    if not found:
        console.print("[red]No images found in the given paths.")
        raise typer.Exit(EXIT_USAGE)
    return found


def tiling_or_exit(size: int | None, overlap: float) -> Tiling | None:
    """The `Tiling` of --tile / --tile-overlap (None without --tile), or exit 2 with the reason."""
    if size is None:
        return None
    from grounded_sam.tiles import Tiling

    try:
        return Tiling(size, overlap)
    except ValueError as error:
        raise typer.BadParameter(str(error), param_hint="--tile") from None


def flag_message(error: BaseException, flag: str) -> str:
    """``error``'s message with the Python argument it suggests (``checkpoint=``) named as ``flag``,
    the option that sets it on the command line."""
    return _CHECKPOINT_ARG.sub(flag, str(error))


_CHECKPOINT_ARG = re.compile(r"`?\bcheckpoint=`?(?:\.\.\.)?")


def pipeline_or_exit(
    sam: str | None, detector: str | None, device: str | None, precision: str = "float32"
) -> GroundedSAM:
    """``default_pipeline(sam, detector, device, precision)``; exits with status 2 and the reason (e.g.
    which weights file to put where, and which option points at it) when the models cannot be built."""
    from grounded_sam.api import default_pipeline

    try:
        return default_pipeline(sam, detector, device, precision)
    except (OSError, ValueError, ImportError) as error:
        console.print(f"[red]Cannot build the models:[/red] {shown(models_message(error, sam))}")
        raise typer.Exit(EXIT_USAGE) from None


def models_message(error: BaseException, sam: str | None) -> str:
    """The message of an error building the models, with the option that points at the weights it
    names (``--sam`` when it is about the ``sam`` model asked for, else ``--detector``)."""
    flag = "--sam" if sam and repr(sam) in str(error) else "--detector"
    return flag_message(error, flag)


def run_per_image(
    images: list[InputImage],
    description: str,
    segment: Callable[[np.ndarray], Result],
    out: Path,
    format: str,
    *,
    classes: Sequence[str],
) -> None:
    """Segment each image, save its result in ``format`` under ``out``, and show a summary table.

    Outputs are named by `grounded_sam.naming.output_stems` (no two inputs share one); ``manifest.json``
    in ``out`` lists each input, its outputs, and why it failed. Class ids come from ``classes`` (every
    label the run can give, in prompt order), so they are the same in every file; YOLO gets one
    ``classes.txt`` for the run. An image's COCO ``file_name`` is its path relative to the folder it was
    found in. Unreadable images and per-image errors are reported at the end (exit status 1); the others
    are still processed, and every file is written atomically, so a failure leaves no partial output.
    """
    from grounded_sam.labeling.state import OutputFolderError, translated_faults

    class_ids = prompt_class_ids(classes, format)
    table = Table("image", "instances", "labels")
    entries: list[dict[str, object]] = []
    stems = output_stems([i.rel for i in images], [str(i.path.absolute()) for i in images], RESERVED)
    try:
        with translated_faults(out), progress_bar() as bar:
            if format == "yolo":
                atomic_write_text(out / "classes.txt", "".join(name + "\n" for name in classes))
            task = bar.add_task(description, total=len(images), rate="")
            start = time.perf_counter()
            for done, (image, stem) in enumerate(zip(images, stems, strict=True), start=1):
                entries.append(_one_image(image, stem, segment, out, format, class_ids, table))
                bar.update(task, advance=1, rate=f"{done / (time.perf_counter() - start):.2f} img/s")
    except OutputFolderError as error:
        console.print(f"[red]{shown(error)}")
        raise typer.Exit(EXIT_USAGE) from None
    finally:  # also after Ctrl-C: the manifest lists what was done
        with contextlib.suppress(OSError):
            manifest = {"format": format, "images": entries}
            atomic_write_text(out / MANIFEST, json.dumps(manifest, indent=1, ensure_ascii=False))
    console.print(table)
    failures = [entry for entry in entries if "failed" in entry]
    for entry in failures:
        console.print(f"[red]failed[/red] {shown(entry['source'])}: {shown(entry['failed'])}")
    if failures:
        raise typer.Exit(EXIT_FAILED)


def _one_image(
    image: InputImage,
    stem: str,
    segment: Callable[[np.ndarray], Result],
    out: Path,
    format: str,
    class_ids: dict[str, int],
    table: Table,
) -> dict[str, object]:
    """Segment and save one image; its manifest entry (outputs, or why it failed). A folder that cannot
    be written (disk full, read-only) raises instead: every later image would fail the same way."""
    from grounded_sam.export import save_result
    from grounded_sam.io import load_image
    from grounded_sam.labeling.state import is_output_fault

    entry: dict[str, object] = {"source": printable(str(image.path)), "stem": stem}
    try:
        pixels = load_image(image.path)
        result = segment(pixels)
        written = save_result(
            result, out, format, stem=stem, image=pixels, class_ids=class_ids, file_name=image.rel
        )  # type: ignore[arg-type]
    except (OSError, ValueError) as error:
        if is_output_fault(error) and getattr(error, "filename", None) != str(image.path):  # not the input
            raise
        entry["failed"] = printable(str(error))
        return entry
    entry["outputs"] = [p.relative_to(out).as_posix() for p in written]
    names = sorted(set(result.labels))
    table.add_row(
        shown(image.rel), str(len(result)), shown(", ".join(names[:8]) + (" ..." * (len(names) > 8)))
    )
    return entry


def configure_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )


def _register_commands() -> None:
    # Sub-command modules register themselves on `app` when imported.
    from grounded_sam.cli import (  # noqa: F401
        demo,
        everything,
        export_onnx,
        inpaint,
        label,
        predict,
        review,
        serve,
        streamlit_cmd,
        track,
    )


_register_commands()
