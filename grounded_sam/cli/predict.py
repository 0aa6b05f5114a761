"""``grounded-sam predict``: text prompt → masks for a list of images, written in one format."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from grounded_sam.cli.app import app, configure_logging, console, expand_images, progress_bar, unique_stems
from grounded_sam.export import EXPORT_FORMATS, save_result
from grounded_sam.io import load_image

FORMAT_HELP = f"Output format: {', '.join(EXPORT_FORMATS)}."


@app.command()
def predict(
    images: Annotated[list[Path], typer.Argument(help="Image files or folders (searched recursively).")],
    prompt: Annotated[str, typer.Option("--prompt", "-p", help='Phrases, e.g. "window. door".')],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder.")] = Path("out"),
    format: Annotated[str, typer.Option("--format", "-f", help=FORMAT_HELP)] = "overlay",
    box_threshold: Annotated[float | None, typer.Option(help="Detector box threshold (0..1).")] = None,
    text_threshold: Annotated[float | None, typer.Option(help="Detector text threshold (0..1).")] = None,
    sam: Annotated[str | None, typer.Option(help="SAM model name or checkpoint path.")] = None,
    detector: Annotated[str | None, typer.Option(help="Detector name or model folder.")] = None,
    device: Annotated[
        str | None, typer.Option(help="cpu, cuda, cuda:1 ... (default: CUDA if available).")
    ] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Find what PROMPT names in each image and write its masks to OUT."""
    configure_logging(verbose)
    if format not in EXPORT_FORMATS:
        raise typer.BadParameter(
            f"{format!r} is not one of {', '.join(EXPORT_FORMATS)}", param_hint="--format"
        )
    paths = list(expand_images(images))
    if not paths:
        console.print("[red]No images found in the given paths.")
        raise typer.Exit(2)
    from grounded_sam.api import default_pipeline

    pipeline = default_pipeline(sam, detector, device)
    table = Table("image", "instances", "labels", title=f"{prompt!r}")
    failures: list[tuple[Path, str]] = []
    with progress_bar() as bar:
        task = bar.add_task("predict", total=len(paths), rate="")
        start = time.perf_counter()
        for done, (path, stem) in enumerate(zip(paths, unique_stems(paths), strict=True), start=1):
            try:
                pixels = load_image(path)
                result = pipeline.predict(
                    pixels, prompt, box_threshold=box_threshold, text_threshold=text_threshold
                )
                save_result(result, out, format, stem=stem, image=pixels)  # type: ignore[arg-type]
                table.add_row(str(path), str(len(result)), ", ".join(sorted(set(result.labels))))
            except (OSError, ValueError) as error:
                failures.append((path, str(error)))
            bar.update(task, advance=1, rate=f"{done / (time.perf_counter() - start):.2f} img/s")
    console.print(table)
    for path, reason in failures:
        console.print(f"[red]failed[/red] {path}: {reason}")
    if failures:
        raise typer.Exit(1)
