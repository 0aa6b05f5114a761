"""``grounded-sam predict``: text prompt → masks for a list of images, written in one format."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from grounded_sam.cli.app import (
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
from grounded_sam.cli.options import (
    BoxThresholdOption,
    DetectorOption,
    DeviceOption,
    ImagesArgument,
    OutFolderOption,
    PrecisionOption,
    SamOption,
    TextThresholdOption,
    TileOption,
    TileOverlapOption,
    VerboseOption,
)
from grounded_sam.export import EXPORT_FORMATS
from grounded_sam.text.prompts import parse_prompt

FORMAT_HELP = f"Output format: {', '.join(EXPORT_FORMATS)}."


@app.command()
@interruptible
def predict(
    images: ImagesArgument,
    prompt: Annotated[str, typer.Option("--prompt", "-p", help='Phrases, e.g. "window. door".')],
    out: OutFolderOption = Path("out"),
    format: Annotated[str, typer.Option("--format", "-f", help=FORMAT_HELP)] = "overlay",
    box_threshold: BoxThresholdOption = None,
    text_threshold: TextThresholdOption = None,
    tile: TileOption = None,
    tile_overlap: TileOverlapOption = 0.2,
    sam: SamOption = None,
    detector: DetectorOption = None,
    device: DeviceOption = None,
    precision: PrecisionOption = "float32",
    verbose: VerboseOption = False,
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
