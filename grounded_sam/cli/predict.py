"""``grounded-sam predict``: text prompt → masks for a list of images, written in one format."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from grounded_sam.cli.app import (
    PrecisionOption,
    app,
    check_precision_option,
    configure_logging,
    console,
    images_or_exit,
    interruptible,
    pipeline_or_exit,
    run_per_image,
    shown,
    tiling_or_exit,
)
from grounded_sam.export import EXPORT_FORMATS
from grounded_sam.text.prompts import parse_prompt

FORMAT_HELP = f"Output format: {', '.join(EXPORT_FORMATS)}."


@app.command()
@interruptible
def predict(
    images: Annotated[list[Path], typer.Argument(help="Image files or folders (searched recursively).")],
    prompt: Annotated[str, typer.Option("--prompt", "-p", help='Phrases, e.g. "window. door".')],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder.")] = Path("out"),
    format: Annotated[str, typer.Option("--format", "-f", help=FORMAT_HELP)] = "overlay",
    box_threshold: Annotated[float | None, typer.Option(help="Detector box threshold (0..1).")] = None,
    text_threshold: Annotated[float | None, typer.Option(help="Detector text threshold (0..1).")] = None,
    tile: Annotated[
        int | None, typer.Option(help="Large images: also detect in tiles of this many pixels (e.g. 1024).")
    ] = None,
    tile_overlap: Annotated[float, typer.Option(help="Overlap of neighbouring tiles (fraction).")] = 0.2,
    sam: Annotated[str | None, typer.Option(help="SAM model name or checkpoint path.")] = None,
    detector: Annotated[str | None, typer.Option(help="Detector name or model folder.")] = None,
    device: Annotated[
        str | None, typer.Option(help="cpu, cuda, cuda:1 ... (default: CUDA if available).")
    ] = None,
    precision: PrecisionOption = "float32",
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Find what PROMPT names in each image and write its masks to OUT."""
    configure_logging(verbose)
    if format not in EXPORT_FORMATS:
        raise typer.BadParameter(
            f"{format!r} is not one of {', '.join(EXPORT_FORMATS)}", param_hint="--format"
        )
    tiles = tiling_or_exit(tile, tile_overlap)
    inputs = images_or_exit(images)
    phrases = parse_prompt(prompt)
    pipeline = pipeline_or_exit(sam, detector, device, check_precision_option(precision))
    console.print(f"prompt: {shown(repr(prompt))}")
    run_per_image(
        inputs,
        "predict",
        lambda pixels: pipeline.predict(
            pixels, prompt, box_threshold=box_threshold, text_threshold=text_threshold, tiles=tiles
        ),
        out,
        format,
        classes=phrases,
    )
