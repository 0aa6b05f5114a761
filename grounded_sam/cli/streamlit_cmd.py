"""``grounded-sam app``: start the Streamlit web app (see ``apps/streamlit_app.py``)."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Annotated

import typer

from grounded_sam.cli.app import app, console, shown


def app_script() -> Path:
    """The page to run: ``apps/streamlit_app.py`` of a source checkout, else the packaged page module."""
    package = Path(__file__).resolve().parents[1]
    checkout = package.parent / "apps" / "streamlit_app.py"
    return checkout if checkout.is_file() else package / "ui" / "page.py"


def streamlit_command(script: Path, port: int, host: str, max_upload_mb: float) -> list[str]:
    """The ``streamlit run`` command line (headless, no usage statistics)."""
    return [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        str(script),
        "--server.port",
        str(port),
        "--server.address",
        host,
        "--server.headless",
        "true",
        # Streamlit's own limit is a whole number of MB (of 2**20 bytes, as the app's), said in the
        # upload box: the app's limit rounded up, so both say "20 MB" for 20; the app checks the exact one.
        "--server.maxUploadSize",
        str(max(1, math.ceil(max_upload_mb))),
        "--browser.gatherUsageStats",
        "false",
    ]


@app.command("app")
def run_app(
    port: Annotated[int, typer.Option(help="Port to serve on.", min=1, max=65535)] = 8501,
    host: Annotated[
        str, typer.Option(help="Address to listen on (0.0.0.0 for every interface).")
    ] = "localhost",
    max_upload_mb: Annotated[
        float | None, typer.Option(help="Largest image upload in MB (default 20).", min=0.1)
    ] = None,
) -> None:
    """Start the web app: text → masks, click to refine, segment everything, inpaint, download."""
    # Imported here so that other sub-commands do not pay for the app's imports.
    from grounded_sam.ui.uploads import DEFAULT_MAX_MB, MAX_UPLOAD_ENV

    max_upload_mb = DEFAULT_MAX_MB if max_upload_mb is None else max_upload_mb
    script = app_script()
    console.print(f"Serving {shown(script)} on http://{shown(host)}:{port} (Ctrl+C to stop)")
    environment = {**os.environ, MAX_UPLOAD_ENV: f"{max_upload_mb:g}"}
    try:
        code = subprocess.call(streamlit_command(script, port, host, max_upload_mb), env=environment)
    except KeyboardInterrupt:
        code = 0
    raise typer.Exit(code)
