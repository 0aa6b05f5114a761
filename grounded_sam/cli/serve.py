"""``grounded-sam serve``: the pipeline over HTTP (JSON masks, OpenAPI at /docs) and as a Label Studio
ML backend under ``/label-studio``."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer

from grounded_sam.cli.app import EXIT_USAGE, app, console, models_message, shown
from grounded_sam.cli.options import DetectorOption, DeviceOption, SamOption

SERVE_EXTRA_HINT = "the server needs its extra: pip install 'grounded_sam[serve]'"


@app.command()
def serve(
    host: Annotated[
        str, typer.Option(help="Address to listen on (0.0.0.0 for every interface).")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.", min=1, max=65535)] = 8000,
    sam: SamOption = None,
    detector: DetectorOption = None,
    device: DeviceOption = None,
    max_image_mb: Annotated[
        float, typer.Option(help="Largest image in MB (checked before decoding).", min=0.001)
    ] = 20.0,
    max_pixels: Annotated[
        int, typer.Option(help="Largest image in pixels (decompression bombs refused).", min=1)
    ] = 50_000_000,
    max_queue: Annotated[
        int, typer.Option(help="Requests that may wait for the model; beyond: 503.", min=0)
    ] = 8,
    cache_images: Annotated[
        int, typer.Option(help="Image embeddings kept for click prompts (LRU).", min=1)
    ] = 8,
    api_key_env: Annotated[
        str | None, typer.Option(help="Environment variable holding the API key clients must send.")
    ] = None,
    files_root: Annotated[
        Path | None, typer.Option(help="Folder Label Studio tasks may name local files under.")
    ] = None,
    log_level: Annotated[str, typer.Option(help="debug, info, warning or error.")] = "info",
) -> None:
    """Serve text -> masks over HTTP, with a Label Studio ML backend under /label-studio."""
    try:
        import uvicorn

        from grounded_sam.serve import ServeConfig, create_app
    except ImportError as error:
        console.print(f"[red]{shown(SERVE_EXTRA_HINT)}[/red] ({shown(error)})")
        raise typer.Exit(EXIT_USAGE) from None
    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        config = ServeConfig(
            sam=sam,
            detector=detector,
            device=device,
            max_image_mb=max_image_mb,
            max_pixels=max_pixels,
            max_queue=max_queue,
            cache_images=cache_images,
            api_key_env=api_key_env,
            files_root=files_root,
        )
        if files_root is not None and not files_root.is_dir():
            raise ValueError(f"--files-root {files_root} is not a folder")
        asgi = create_app(config)
    except (OSError, ValueError, ImportError) as error:
        console.print(f"[red]Cannot start the server:[/red] {shown(models_message(error, sam))}")
        raise typer.Exit(EXIT_USAGE) from None
    console.print(
        f"Serving on http://{shown(host)}:{port} (API docs at /docs, Label Studio at /label-studio)"
    )
    uvicorn.run(asgi, host=host, port=port, log_level=log_level.lower(), access_log=False)
