"""``grounded-sam inpaint``: find what a prompt names and remove it, or replace it with something else."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from PIL import Image

from grounded_sam.atomic import atomic_path
from grounded_sam.cli.app import (
    EXIT_FAILED,
    EXIT_USAGE,
    app,
    configure_logging,
    console,
    flag_message,
    interruptible,
    pipeline_or_exit,
    shown,
)
from grounded_sam.cli.options import (
    BoxThresholdOption,
    DetectorOption,
    DeviceOption,
    SamOption,
    TextThresholdOption,
    VerboseOption,
)
from grounded_sam.io import load_image

if TYPE_CHECKING:
    import numpy as np

    from grounded_sam.result import Result


@app.command()
@interruptible
def inpaint(
    image: Annotated[Path, typer.Argument(help="The image to edit.")],
    prompt: Annotated[str, typer.Option("--prompt", "-p", help='What to remove, e.g. "car. person".')],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output image file (PNG, JPEG, ...).")],
    replace_with: Annotated[
        str | None,
        typer.Option(help='Paint this instead (Stable Diffusion, needs diffusers), e.g. "a bicycle".'),
    ] = None,
    dilate: Annotated[int, typer.Option(help="Grow the masks by this many pixels.", min=0)] = 5,
    method: Annotated[str, typer.Option(help="Removal method: telea or ns (OpenCV).")] = "telea",
    steps: Annotated[int, typer.Option(help="Diffusion steps (with --replace-with).", min=1)] = 25,
    seed: Annotated[int, typer.Option(help="Diffusion seed (with --replace-with).")] = 0,
    inpaint_model: Annotated[
        Path | None,
        typer.Option(help="Diffusers inpainting model folder (else $GROUNDED_SAM_INPAINT_MODEL)."),
    ] = None,
    box_threshold: BoxThresholdOption = None,
    text_threshold: TextThresholdOption = None,
    sam: SamOption = None,
    detector: DetectorOption = None,
    device: DeviceOption = None,
    verbose: VerboseOption = False,
) -> None:
    """Remove what PROMPT names in IMAGE (or replace it with --replace-with) and write OUT."""
    configure_logging(verbose)
    if method not in ("telea", "ns"):
        raise typer.BadParameter(f"{method!r} is not telea or ns", param_hint="--method")
    if out.suffix.lower() not in Image.registered_extensions():
        raise typer.BadParameter(f"{out.name!r} has no image suffix such as .png or .jpg", param_hint="--out")
    from grounded_sam.inpaint.diffusers_backend import load_inpaint_pipeline

    try:
        pixels = load_image(image)
        # Stable Diffusion first: a missing model or extra is said before any detection runs.
        painter = load_inpaint_pipeline(inpaint_model, device) if replace_with else None
    except (OSError, ValueError, ImportError) as error:
        console.print(f"[red]{shown(flag_message(error, '--inpaint-model'))}")
        raise typer.Exit(EXIT_USAGE) from error
    try:
        result = pipeline_or_exit(sam, detector, device).predict(
            pixels, prompt, box_threshold=box_threshold, text_threshold=text_threshold
        )
        if len(result) == 0:
            found = f"Nothing found for {shown(repr(prompt))} in {shown(image)}"
            console.print(f"[yellow]{found}; {shown(out)} was not written.")
            raise typer.Exit(EXIT_FAILED)
        edited = _edit(
            pixels, result, replace_with, painter, method=method, dilate=dilate, steps=steps, seed=seed
        )
    except (OSError, ValueError, ImportError) as error:
        console.print(f"[red]{shown(error)}")
        raise typer.Exit(EXIT_USAGE) from error
    with atomic_path(out) as tmp:
        Image.fromarray(edited).save(tmp)
    action = f"replaced with {replace_with!r}" if replace_with else "removed"
    labels = ", ".join(sorted(set(result.labels)))
    console.print(f"{len(result)} instance(s) of {shown(labels)} {shown(action)}: {shown(out)}")


def _edit(
    pixels: np.ndarray,
    result: Result,
    replace_with: str | None,
    painter: Any,
    *,
    method: str,
    dilate: int,
    steps: int,
    seed: int,
) -> np.ndarray:
    """The image with the masks of `result` removed (OpenCV `method`), or painted over with `replace_with`
    by the diffusers `painter`."""
    from grounded_sam.inpaint import ReplaceSettings
    from grounded_sam.inpaint import inpaint as run_inpaint

    if not replace_with:
        return run_inpaint(pixels, result.masks, backend=method, dilate=dilate)  # type: ignore[arg-type]
    return run_inpaint(
        pixels,
        result.masks,
        replace_with,
        backend="diffusers",
        dilate=dilate,
        settings=ReplaceSettings(steps=steps, seed=seed),
        pipeline=painter,
    )
