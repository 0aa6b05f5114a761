"""Model calls off the event loop, one at a time per model, behind a bounded queue (503 beyond it)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from grounded_sam.serve.errors import ApiError

T = TypeVar("T")


class ModelWorker:
    """Runs model calls on one thread of its own, in arrival order.

    At most ``1 + max_queue`` calls are admitted at once (one running, the rest waiting); a call beyond
    that raises a 503 :class:`ApiError` at once instead of waiting. The event loop never blocks on a
    model: it awaits the worker thread.
    """

    def __init__(self, name: str, max_queue: int) -> None:
        if max_queue < 0:
            raise ValueError(f"max_queue must be >= 0; got {max_queue}")
        self.name = name
        self.max_queue = max_queue
        self.rejected = 0
        self.completed = 0
        self._admitted = 0
        self._lock = threading.Lock()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"model-{name}")

    async def run(self, call: Callable[[], T]) -> T:
        """``call()`` on the worker thread; 503 when ``1 + max_queue`` calls are already admitted."""
        with self._lock:
            if self._admitted >= 1 + self.max_queue:
                self.rejected += 1
                raise ApiError(
                    503,
                    "busy",
                    f"the server is busy: {self._admitted} requests are running or waiting for the "
                    f"model (limit {1 + self.max_queue}); retry shortly",
                )
            self._admitted += 1
        job = self._executor.submit(call)
        # Released when the call ends, not when the request does: a client that goes away does not
        # free the model before its call has finished.
        job.add_done_callback(self._release)
        return await asyncio.wrap_future(job)

    def _release(self, _job: object) -> None:
        with self._lock:
            self._admitted -= 1
            self.completed += 1

    def stats(self) -> dict[str, int]:
        with self._lock:
            return {
                "running": min(self._admitted, 1),
                "waiting": max(self._admitted - 1, 0),
                "max_queue": self.max_queue,
                "completed": self.completed,
                "rejected": self.rejected,
            }

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)


class BodyLimitMiddleware:
    """ASGI middleware: a request body over ``max_bytes`` gets 413 before the application sees it.

    A declared ``Content-Length`` is checked before anything is read; a chunked body (no length) is
    read up to the limit and then handed on, so an oversized upload is never held whole in memory.
    """

    def __init__(self, app: Any, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None:
            if declared.isdigit() and int(declared) > self.max_bytes:
                await self._refuse(scope, receive, send, int(declared))
                return
            await self.app(scope, receive, send)
            return
        messages, size = [], 0
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":
                break
            size += len(message.get("body", b""))
            if size > self.max_bytes:
                await self._refuse(scope, receive, send, size)
                return
            if not message.get("more_body", False):
                break
        await self.app(scope, _replay(messages, receive), send)

    async def _refuse(self, scope: dict, receive: Callable, send: Callable, size: int) -> None:
        from grounded_sam.serve.errors import error_response

        message = (
            f"the request body is over {size / 2**20:.2f} MB; the limit is {self.max_bytes / 2**20:.2f} MB "
            "(one image of --max-image-mb, base64-encoded, plus the other fields)"
        )
        await error_response(413, "too_large", message)(scope, receive, send)


def _replay(messages: list[dict], receive: Callable) -> Callable:
    """A ``receive`` that gives ``messages`` first, then whatever ``receive`` gives."""
    pending = list(messages)

    async def replay() -> dict:
        return pending.pop(0) if pending else await receive()

    return replay
