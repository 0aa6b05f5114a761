"""Options several commands share, written once: ``name: SamOption = None`` in a command's signature.

Each is a typer ``Annotated`` alias; the default value stays in the command's signature.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

ImagesArgument = Annotated[list[Path], typer.Argument(help="Image files or folders (searched recursively).")]
OutFolderOption = Annotated[Path, typer.Option("--out", "-o", help="Output folder.")]
BoxThresholdOption = Annotated[float | None, typer.Option(help="Detector box threshold (0..1).")]
TextThresholdOption = Annotated[float | None, typer.Option(help="Detector text threshold (0..1).")]
TileOption = Annotated[
    int | None, typer.Option(help="Large images: also detect in tiles of this many pixels (e.g. 1024).")
]
TileOverlapOption = Annotated[float, typer.Option(help="Overlap of neighbouring tiles (fraction).")]
SamOption = Annotated[
    str | None, typer.Option(help="SAM model name or checkpoint path (default: the demo model).")
]
DetectorOption = Annotated[
    str | None, typer.Option(help="Detector name or model folder (default: the demo model).")
]
DeviceOption = Annotated[str | None, typer.Option(help="cpu, cuda, cuda:1 ... (default: CUDA if available).")]
PrecisionOption = Annotated[
    str,
    typer.Option(
        help="SAM's precision: float32 (exact), bfloat16 (faster only on GPUs and CPUs with AMX), auto "
        "(bfloat16 where the device has bfloat16 matrix units, else float32), or int8 (x86 CPUs: the image "
        "encoder's linear layers in int8; close to float32, not exact)."
    ),
]
VerboseOption = Annotated[bool, typer.Option("--verbose", "-v", help="Log debug messages.")]
