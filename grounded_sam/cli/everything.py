"""``grounded-sam everything``: every object in each image, optionally named from a class list."""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Annotated, Literal

import typer

from grounded_sam.cli.app import (
    EXIT_USAGE,
    app,
    check_precision_option,
    configure_logging,
    console,
    images_or_exit,
    interruptible,
    pipeline_or_exit,
    run_per_image,
    shown,
)
from grounded_sam.cli.options import (
    DeviceOption,
    ImagesArgument,
    OutFolderOption,
    PrecisionOption,
    SamOption,
    VerboseOption,
)

Mode = Literal["grid", "boxes"]


@app.command()
@interruptible
def everything(
    images: ImagesArgument,
    out: OutFolderOption = Path("out"),
    classes: Annotated[str | None, typer.Option(help='Name masks with CLIP from "car,tree,road".')] = None,
    mode: Annotated[
        str, typer.Option(help="grid: point grid (exact SAM AMG); boxes: detector boxes.")
    ] = "grid",
    format: Annotated[str, typer.Option("--format", "-f", help="coco, png, overlay or json.")] = "overlay",
    points_per_side: Annotated[int | None, typer.Option(help="Grid density (default: the model's).")] = None,
    sam: SamOption = None,
    device: DeviceOption = None,
    precision: PrecisionOption = "float32",
    verbose: VerboseOption = False,
) -> None:
    """Segment everything in each image and write the masks to OUT."""
    from grounded_sam.everything_labels import everything_result

    configure_logging(verbose)
    check_precision_option(precision)
    if mode not in ("grid", "boxes"):
        raise typer.BadParameter(f"{mode!r} is not grid or boxes", param_hint="--mode")
    if format not in ("coco", "png", "overlay", "json"):
        raise typer.BadParameter(f"{format!r} is not coco, png, overlay or json", param_hint="--format")
    inputs = images_or_exit(images)
    class_list = [name.strip() for name in classes.split(",") if name.strip()] if classes else None
    if class_list and _demo_model(sam):
        class_list = _taught(class_list)
    generator, labeler, pipeline = _models(sam, device, points_per_side, class_list is not None)
    generator.predictor.precision = precision  # the predictor is shared with the pipeline's box stage
    detector = pipeline.detector if mode == "boxes" else None
    phrases = tuple(class_list or ["object"])
    run_per_image(
        inputs,
        "everything",
        lambda pixels: everything_result(
            generator, pixels, class_list, labeler=labeler, detector=detector, phrases=phrases
        ),
        out,
        format,
        classes=[*class_list, "no label"] if class_list else ["object"],
    )


def _demo_model(sam: str | None) -> bool:
    from grounded_sam.api import DEMO, DEMO_SAM, SAM_ENV

    return (sam or os.environ.get(SAM_ENV) or DEMO) in (DEMO, DEMO_SAM)


def _taught(classes: list[str]) -> list[str] | None:
    """The classes the demo model can name, with a warning for the others (as ``predict`` gives); None
    when it can name none of them (the masks are then plain "object"s)."""
    from grounded_sam.text.demo_clip import findable, warn_untaught

    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        warn_untaught(classes)
    for warning in said:
        console.print(f"[yellow]Warning:[/yellow] {shown(warning.message)}")
    return [name for name in classes if findable(name)] or None


def _models(sam: str | None, device: str | None, points_per_side: int | None, labelled: bool):
    """The mask generator, the labeler naming its masks (when classes are asked for) and the text
    pipeline for boxes."""
    from grounded_sam.api import default_everything_labeler, default_mask_generator

    pipeline = pipeline_or_exit(sam, None, device)
    try:
        generator = default_mask_generator(sam, device, points_per_side=points_per_side)
    except ValueError as error:
        console.print(f"[red]{shown(error)}[/red]")
        raise typer.Exit(EXIT_USAGE) from None
    labeler = default_everything_labeler(sam, device) if labelled else None
    return generator, labeler, pipeline
