"""Inputs of the app: uploads checked for type, size and shape with friendly messages, bundled examples,
and prompts cut to a sane length.

All images come out as (H, W, 3) uint8 RGB arrays with EXIF orientation applied.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Mapping
from pathlib import PurePath
from types import MappingProxyType

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from grounded_sam.data import Scene, SceneConfig, make_scene
from grounded_sam.io import ImageLoadError, load_image

UPLOAD_TYPES: tuple[str, ...] = ("png", "jpg", "jpeg", "webp", "bmp", "tif", "tiff")
"""File suffixes the uploader accepts (lower case, without the dot)."""

MAX_UPLOAD_ENV = "GROUNDED_SAM_APP_MAX_UPLOAD_MB"
DEFAULT_MAX_MB = 20.0
DEFAULT_MAX_PIXELS = 40_000_000
MIN_SIDE = 8  # pixels: thinner images cannot be shown or segmented (SAM's input would be 0 pixels tall)
MAX_ASPECT = 50  # longest side / shortest side
MAX_PROMPT_CHARS = 500

EXAMPLE_CONFIG = SceneConfig(size=(240, 320), min_objects=3, max_objects=5, size_range=(0.22, 0.4))
EXAMPLES: Mapping[str, int] = MappingProxyType(
    {"Shapes on a gradient": 11, "Shapes on texture": 23, "Crowded shapes": 42}
)
"""Bundled example name -> seed of the synthetic scene drawn with `EXAMPLE_CONFIG`."""


class UploadError(ValueError):
    """An uploaded file cannot be used; the message is written for the person who uploaded it."""


def read_upload(
    name: str, data: bytes, *, max_mb: float = DEFAULT_MAX_MB, max_pixels: int = DEFAULT_MAX_PIXELS
) -> np.ndarray:
    """Decode an uploaded file into (H, W, 3) uint8 RGB after checking its type, size and content.

    Raises:
        UploadError: with a message saying what is wrong and what to upload instead.
    """
    suffix = PurePath(name).suffix.lower().lstrip(".")
    if suffix not in UPLOAD_TYPES:
        raise UploadError(
            f"“{name}” is not a supported image type; upload one of: {', '.join(UPLOAD_TYPES).upper()}."
        )
    size_mb = len(data) / 2**20
    if size_mb > max_mb:
        raise UploadError(
            f"“{name}” is {size_mb:.1f} MB; the limit is {max_mb:g} MB. Upload a smaller image."
        )
    if not data:
        raise UploadError(f"“{name}” is empty (0 bytes); upload the image again.")
    try:
        with Image.open(io.BytesIO(data)) as opened:
            width, height = opened.size
            if width * height > max_pixels:  # read from the header: a decompression bomb is never decoded
                raise UploadError(
                    f"“{name}” is {width}×{height} pixels; the limit is {max_pixels / 1e6:g} megapixels. "
                    "Downscale it first."
                )
            if min(width, height) < MIN_SIDE or max(width, height) > MAX_ASPECT * min(width, height):
                raise UploadError(
                    f"“{name}” is {width}×{height} pixels: too thin to show or segment (each side must be at "
                    f"least {MIN_SIDE} pixels and at most {MAX_ASPECT} times the other). Crop or pad it."
                )
            opened.load()
            return load_image(ImageOps.exif_transpose(opened))
    except Image.DecompressionBombError as error:  # Pillow refuses it when opening: far over our limit
        raise UploadError(
            f"“{name}” declares far more pixels than the limit of {max_pixels / 1e6:g} megapixels (a "
            "decompression bomb, or a huge image); it was not decoded. Upload a smaller image."
        ) from error
    except UnidentifiedImageError as error:
        raise UploadError(f"“{name}” could not be read as an image ({type(error).__name__}).") from error
    except (OSError, ImageLoadError) as error:
        raise UploadError(f"“{name}” could not be decoded: {error}. The file may be truncated.") from error


def limit_prompt(prompt: str, max_chars: int = MAX_PROMPT_CHARS) -> tuple[str, str | None]:
    """`prompt` cut to `max_chars` characters (at the last phrase separator or space before the limit when
    there is one), and a notice to show when it was cut (None otherwise)."""
    if len(prompt) <= max_chars:
        return prompt, None
    head = prompt[:max_chars]
    cut = max(head.rfind("."), head.rfind(","))  # a whole phrase, else a whole word, else the limit
    if cut <= max_chars // 2:
        cut = head.rfind(" ")
    kept = (head[:cut] if cut > max_chars // 2 else head).rstrip(" .,")
    return kept, (
        f"The prompt had {len(prompt):,} characters; only the first {len(kept):,} are used "
        f"(the limit is {max_chars:,}). Name fewer, shorter phrases."
    )


def image_id(pixels: np.ndarray) -> str:
    """A short content hash of an (H, W, 3) image: the same pixels give the same id."""
    digest = hashlib.blake2b(np.ascontiguousarray(pixels).tobytes(), digest_size=12)
    digest.update(repr(pixels.shape).encode())
    return digest.hexdigest()


def example_scene(name: str) -> Scene:
    """The bundled example ``name`` (a key of `EXAMPLES`), with its ground-truth labels."""
    if name not in EXAMPLES:
        raise ValueError(f"unknown example {name!r}; choose one of {', '.join(EXAMPLES)}")
    return make_scene(EXAMPLES[name], EXAMPLE_CONFIG)
