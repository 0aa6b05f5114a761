"""The server's settings: one frozen dataclass, filled from the command line."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

DEFAULT_MAX_PIXELS = 50_000_000


@dataclass(frozen=True)
class ServeConfig:
    """Settings of ``grounded-sam serve``.

    Attributes:
        sam, detector, device: the pipeline, as for :func:`grounded_sam.api.default_pipeline`
            (``None``: the environment's, else the embedded demo model).
        max_image_mb: largest encoded image accepted, in MiB (checked before decoding).
        max_pixels: largest decoded image, in pixels (read from the header; decompression bombs refused).
        max_queue: requests that may wait for the model while one runs; beyond that, 503 at once.
        cache_images: image embeddings kept for interactive prompts (least recently used dropped).
        api_key_env: name of the environment variable holding the API key; ``None`` for no key.
        files_root: folder Label Studio tasks may name local files under; ``None`` allows none.
        fetch_timeout: seconds allowed to fetch one task image over HTTP.
    """

    sam: str | None = None
    detector: str | None = None
    device: str | None = None
    max_image_mb: float = 20.0
    max_pixels: int = DEFAULT_MAX_PIXELS
    max_queue: int = 8
    cache_images: int = 8
    api_key_env: str | None = None
    files_root: Path | None = None
    fetch_timeout: float = 10.0

    def __post_init__(self) -> None:
        if self.max_image_mb <= 0:
            raise ValueError(f"max_image_mb must be > 0; got {self.max_image_mb}")
        if self.max_pixels < 1:
            raise ValueError(f"max_pixels must be >= 1; got {self.max_pixels}")
        if self.max_queue < 0:
            raise ValueError(f"max_queue must be >= 0; got {self.max_queue}")
        if self.cache_images < 1:
            raise ValueError(f"cache_images must be >= 1; got {self.cache_images}")

    @property
    def max_image_bytes(self) -> int:
        return int(self.max_image_mb * 2**20)

    @property
    def max_body_bytes(self) -> int:
        """The largest request body: one image, base64-encoded (4/3), plus room for the other fields."""
        return self.max_image_bytes * 4 // 3 + 2**20
