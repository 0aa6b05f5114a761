"""The FastAPI application: the HTTP API, the Label Studio ML backend under ``/label-studio``, errors
as JSON, an access log line per request, and a body-size limit in front of everything."""

from __future__ import annotations

import os
from typing import Any

from fastapi import FastAPI

from grounded_sam import __version__
from grounded_sam.serve.access_log import AccessLogMiddleware
from grounded_sam.serve.config import ServeConfig
from grounded_sam.serve.errors import install_error_handlers
from grounded_sam.serve.limits import BodyLimitMiddleware
from grounded_sam.serve.models import ModelRegistry
from grounded_sam.serve.routes import health_router, router
from grounded_sam.serve.task_images import TaskImageSource

LABEL_STUDIO_PREFIX = "/label-studio"


def api_key(config: ServeConfig) -> str | None:
    """The key clients must send: the value of ``config.api_key_env`` (which must be set and non-empty)."""
    if config.api_key_env is None:
        return None
    key = os.environ.get(config.api_key_env, "")
    if not key:
        raise ValueError(f"--api-key-env {config.api_key_env}: that environment variable is not set or empty")
    return key


def create_app(config: ServeConfig, registry: ModelRegistry | None = None) -> Any:
    """The ASGI application serving ``registry`` (built from ``config`` when not given).

    Example:
        >>> app = create_app(ServeConfig())  # doctest: +SKIP
        >>> uvicorn.run(app, host="127.0.0.1", port=8000)  # doctest: +SKIP
    """
    from grounded_sam.serve.label_studio_routes import label_studio_router

    key = api_key(config)  # before the models load: a missing key fails at once
    registry = registry or ModelRegistry.load(config)
    app = FastAPI(
        title="grounded-sam",
        version=__version__,
        summary="Text-prompted segmentation: masks, boxes, labels and scores as JSON.",
    )
    app.state.registry = registry
    app.state.api_key = key
    app.state.task_images = TaskImageSource.from_env(
        config.files_root, config.max_image_bytes, config.fetch_timeout
    )
    install_error_handlers(app)
    app.include_router(health_router)
    app.include_router(router)
    app.include_router(label_studio_router, prefix=LABEL_STUDIO_PREFIX)
    return AccessLogMiddleware(BodyLimitMiddleware(app, config.max_body_bytes))
