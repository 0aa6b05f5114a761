"""One log line per request: method, path, status, milliseconds and detections; never image data."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

logger = logging.getLogger("grounded_sam.serve.access")

DETECTIONS_KEY = "detections"
"""Key of ``request.state`` where a route leaves the number of detections it answered."""


class AccessLogMiddleware:
    """ASGI middleware writing ``METHOD PATH STATUS MS ms detections=N`` at INFO for every request.

    Only the path is logged (no query string, no body, no headers), so images and keys never reach logs.
    """

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def send_status(message: dict) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            state = scope.get("state") or {}
            detections = state.get(DETECTIONS_KEY)
            logger.info(
                "%s %s %d %.1f ms detections=%s",
                scope.get("method", "?"),
                scope.get("path", "?"),
                status,
                (time.perf_counter() - start) * 1000,
                "-" if detections is None else detections,
            )
