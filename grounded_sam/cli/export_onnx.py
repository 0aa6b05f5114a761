"""``grounded-sam export-onnx``: a SAM model as ONNX files for ONNX Runtime, browsers, CVAT, X-AnyLabeling."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from grounded_sam.cli.app import EXIT_USAGE, app, configure_logging, console, flag_message, shown
from grounded_sam.cli.options import VerboseOption


@app.command("export-onnx")
def export_onnx_command(
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder to write the files into.")],
    sam: Annotated[
        str, typer.Option(help="SAM model name (sam_vit_b, mobile_sam, demo_sam, ...) or checkpoint path.")
    ] = "demo_sam",
    opset: Annotated[int, typer.Option(help="ONNX opset (18 or newer).", min=18)] = 18,
    quantize: Annotated[
        bool, typer.Option(help="Also write int8 files and measure their mask IoU against float32.")
    ] = False,
    return_single_mask: Annotated[
        bool, typer.Option(help="Decoder returns one mask per prompt (the official export's option).")
    ] = False,
    verbose: VerboseOption = False,
) -> None:
    """Write encoder.onnx, decoder.onnx (the official decoder's inputs and outputs, any image size),
    config.json and an X-AnyLabeling YAML into OUT; load them with `--sam onnx:OUT`."""
    configure_logging(verbose)
    try:
        from grounded_sam.sam.onnx import export_onnx

        with console.status(f"Exporting {shown(sam)} ..."):
            config = export_onnx(
                sam, out, opset=opset, quantize=quantize, return_single_mask=return_single_mask
            )
    except (OSError, ValueError, ImportError) as error:
        console.print(f"[red]Cannot export {shown(sam)}:[/red] {shown(flag_message(error, '--sam'))}")
        raise typer.Exit(EXIT_USAGE) from None
    table = Table("role", "file", "size", "sha256")
    for role, entry in config.files.items():
        size = sum((out / name).stat().st_size for name in (entry.path, entry.external_data) if name)
        table.add_row(role, shown(entry.path), f"{size / 1e6:.1f} MB", entry.sha256[:16])
    console.print(table)
    if config.quantized_accuracy:
        accuracy = config.quantized_accuracy
        console.print(
            f"int8 vs float32 mask IoU: mean {accuracy['mask_iou_int8_vs_float32_mean']}, "
            f"min {accuracy['mask_iou_int8_vs_float32_min']} ({accuracy['instances']} objects)"
        )
    console.print(f"Use it: grounded-sam predict IMAGE -p TEXT --sam onnx:{shown(out)}")
