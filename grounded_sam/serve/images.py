"""Request images: bytes from an upload or base64, size checked before decoding, identified by sha256."""

from __future__ import annotations

import base64
import binascii
import hashlib
from dataclasses import dataclass

import numpy as np

from grounded_sam.io import ImageLoadError, ImageTooLargeError, load_image_bytes
from grounded_sam.serve.errors import bad_image, too_large


@dataclass(frozen=True)
class RequestImage:
    """A decoded request image: (H, W, 3) uint8 RGB ``pixels`` and ``image_id``, the bytes' sha256."""

    pixels: np.ndarray
    image_id: str

    @property
    def size(self) -> tuple[int, int]:
        return int(self.pixels.shape[0]), int(self.pixels.shape[1])


def image_id(data: bytes) -> str:
    """The id of an encoded image: the hex sha256 of its bytes."""
    return hashlib.sha256(data).hexdigest()


def from_base64(text: str) -> bytes:
    """Bytes of a base64 image (a ``data:image/...;base64,`` prefix is allowed); 400 when not base64."""
    if text.startswith("data:"):
        text = text.partition(",")[2]
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as error:
        raise bad_image(f"image is not valid base64 ({error})") from None


def check_size(data: bytes, max_bytes: int) -> None:
    """413 when ``data`` is larger than ``max_bytes``."""
    if len(data) > max_bytes:
        raise too_large(
            f"the image is {len(data) / 2**20:.2f} MB; the limit is {max_bytes / 2**20:g} MB (--max-image-mb)"
        )


def decode(data: bytes, max_bytes: int, max_pixels: int) -> RequestImage:
    """Check the size (413), decode (400 when unreadable, 413 beyond ``max_pixels``) and identify."""
    check_size(data, max_bytes)
    try:
        pixels = load_image_bytes(data, max_pixels=max_pixels, source="the image")
    except ImageTooLargeError as error:
        raise too_large(str(error)) from None
    except ImageLoadError as error:
        raise bad_image(str(error)) from None
    return RequestImage(pixels, image_id(data))
