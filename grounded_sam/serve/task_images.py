"""Task images for the Label Studio backend: fetched over HTTP (bounded), from Label Studio itself, or
read from a local folder the server was given, never from outside it."""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, urljoin, urlparse

import httpx

from grounded_sam.serve.errors import ApiError, bad_image
from grounded_sam.serve.images import check_size, from_base64

LABEL_STUDIO_URL_ENV = "LABEL_STUDIO_URL"
LABEL_STUDIO_API_KEY_ENV = "LABEL_STUDIO_API_KEY"
LABEL_STUDIO_PATHS = ("/data/", "/storage-data/")
LOCAL_FILES_PATH = "/data/local-files"


@dataclass(frozen=True)
class TaskImageSource:
    """Where task images may come from.

    Attributes:
        label_studio_url: Label Studio's address, for its own ``/data/...`` paths (``LABEL_STUDIO_URL``).
        api_key: Label Studio's access token, sent only to ``label_studio_url`` (``LABEL_STUDIO_API_KEY``).
        files_root: the one folder local paths may name (``--files-root``); ``None`` allows no local file.
        max_bytes: largest image; timeout: seconds for one HTTP fetch.
    """

    label_studio_url: str | None
    api_key: str | None
    files_root: Path | None
    max_bytes: int
    timeout: float

    @classmethod
    def from_env(cls, files_root: Path | None, max_bytes: int, timeout: float) -> TaskImageSource:
        return cls(
            os.environ.get(LABEL_STUDIO_URL_ENV) or None,
            os.environ.get(LABEL_STUDIO_API_KEY_ENV) or None,
            files_root.resolve() if files_root is not None else None,
            max_bytes,
            timeout,
        )

    async def read(self, url: str) -> bytes:
        """The bytes of the image at ``url`` (see the module docstring); 400/403/413 ApiErrors."""
        if url.startswith("data:"):
            data = from_base64(url)
            check_size(data, self.max_bytes)
            return data
        parsed = urlparse(url)
        if parsed.scheme in ("http", "https"):
            return await self._fetch(url)
        if parsed.scheme:
            raise bad_image(f"task image {url[:100]!r}: only http(s), Label Studio paths and local files")
        if url.startswith(LOCAL_FILES_PATH) and self.files_root is not None:
            names = parse_qs(parsed.query).get("d")
            if not names:
                raise bad_image(f"task image {url[:100]!r} names no file (?d=...)")
            return self._local(names[-1])
        if url.startswith(LABEL_STUDIO_PATHS):
            if self.label_studio_url is None:
                raise bad_image(
                    f"task image {url[:100]!r} is stored in Label Studio: set {LABEL_STUDIO_URL_ENV} (and "
                    f"{LABEL_STUDIO_API_KEY_ENV}) so the backend can fetch it"
                )
            return await self._fetch(urljoin(self.label_studio_url.rstrip("/") + "/", url.lstrip("/")))
        return self._local(url)

    def _local(self, name: str) -> bytes:
        if self.files_root is None:
            raise ApiError(
                403, "forbidden_path", "local task files are off; start the server with --files-root"
            )
        path = (self.files_root / name.lstrip("/")).resolve()
        if not path.is_relative_to(self.files_root):
            raise ApiError(403, "forbidden_path", f"{name[:100]!r} is outside --files-root")
        if not path.is_file():
            raise bad_image(f"task image {name[:100]!r} does not exist under --files-root")
        if path.stat().st_size > self.max_bytes:
            raise ApiError(413, "too_large", f"task image {name[:100]!r} is over --max-image-mb")
        return path.read_bytes()

    def _headers(self, url: str) -> dict[str, str]:
        if self.api_key is None or self.label_studio_url is None:
            return {}
        if urlparse(url).netloc != urlparse(self.label_studio_url).netloc:
            return {}  # the token goes to Label Studio only
        scheme = "Bearer" if self.api_key.count(".") == 2 else "Token"  # a JWT (personal token) or legacy
        return {"Authorization": f"{scheme} {self.api_key}"}

    async def _fetch(self, url: str) -> bytes:
        """GET ``url``, at most ``max_bytes`` and ``timeout`` seconds in all (redirects included)."""
        try:
            return await asyncio.wait_for(self._download(url), timeout=self.timeout)
        except asyncio.TimeoutError:
            raise bad_image(f"fetching task image {url[:100]!r} took over {self.timeout:g} s") from None

    async def _download(self, url: str) -> bytes:
        try:
            async with (
                httpx.AsyncClient(timeout=self.timeout, follow_redirects=True, max_redirects=3) as client,
                client.stream("GET", url, headers=self._headers(url)) as response,
            ):
                if response.status_code != 200:
                    raise bad_image(f"fetching task image {url[:100]!r} gave HTTP {response.status_code}")
                chunks, size = [], 0
                async for chunk in response.aiter_bytes():
                    size += len(chunk)
                    if size > self.max_bytes:
                        raise ApiError(413, "too_large", f"task image {url[:100]!r} is over --max-image-mb")
                    chunks.append(chunk)
                return b"".join(chunks)
        except httpx.HTTPError as error:
            raise bad_image(f"could not fetch task image {url[:100]!r}: {type(error).__name__}") from None
