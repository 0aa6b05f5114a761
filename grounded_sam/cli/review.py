"""``grounded-sam review``: open a labelled dataset in the app's Review page, or export the review."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Annotated

import typer

from grounded_sam.cli.app import EXIT_USAGE, app, console, shown
from grounded_sam.cli.streamlit_cmd import app_script, streamlit_command


@app.command()
def review(
    dataset: Annotated[Path, typer.Argument(help="Dataset folder written by grounded-sam label.")],
    export: Annotated[
        Path | None,
        typer.Option(help="Write the reviewed dataset to this new folder instead of opening the app."),
    ] = None,
    format: Annotated[
        str, typer.Option("--format", "-f", help="Export format: coco, yolo or masks.")
    ] = "coco",
    include_unreviewed: Annotated[
        bool, typer.Option(help="Export labels nobody reviewed too (default: approved and edited ones only).")
    ] = False,
    port: Annotated[int, typer.Option(help="Port of the app.", min=1, max=65535)] = 8501,
    host: Annotated[str, typer.Option(help="Address the app listens on.")] = "localhost",
) -> None:
    """Review DATASET (most doubtful images first; decisions saved as you make them), or export it."""
    from grounded_sam.labeling.review import ReviewSession
    from grounded_sam.ui.review import REVIEW_ENV

    try:
        session = ReviewSession(dataset)
    except (OSError, ValueError) as error:
        console.print(f"[red]{shown(error)}")
        raise typer.Exit(EXIT_USAGE) from None
    decided, total = session.progress()
    if export is None:
        console.print(f"Reviewing {shown(dataset)}: {decided} of {total} instances decided")
        console.print(f"Serving the Review page on http://{shown(host)}:{port} (Ctrl+C to stop)")
        environment = {**os.environ, REVIEW_ENV: str(dataset.resolve())}
        try:
            code = subprocess.call(streamlit_command(app_script(), port, host, 20.0), env=environment)
        except KeyboardInterrupt:
            code = 0
        raise typer.Exit(code)
    try:
        files = session.export(export, format, include_unreviewed=include_unreviewed)  # type: ignore[arg-type]
    except (OSError, ValueError) as error:
        console.print(f"[red]{shown(error)}")
        raise typer.Exit(EXIT_USAGE) from None
    kept = "approved, edited and unreviewed" if include_unreviewed else "approved and edited"
    console.print(
        f"wrote the {kept} labels ({decided} of {total} decided) to {shown(export)}: {len(files)} files"
    )
