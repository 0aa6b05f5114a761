"""Image loading: every supported input becomes one contiguous (H, W, 3) uint8 RGB array.

Supported inputs and the rules applied to them:

* **paths** are decoded with Pillow (its decompression-bomb guard stays on), the first frame of a
  multi-frame file is used and the EXIF orientation is applied, so pixel coordinates match what an
  image viewer shows. In-memory images (PIL, arrays, tensors) are taken as they are.
* **PIL images** of any common mode: grayscale (``1``, ``L``), palette (``P``, with or without
  transparency), 16/32-bit integer (``I;16*``, ``I``: values are read as 16-bit and scaled by 255/65535),
  float (``F``: values in [0, 1]), ``CMYK``, ``YCbCr``, ``RGB``, ``RGBA``, ``LA``.
* **numpy arrays** (H, W), (H, W, 1), (H, W, 3) or (H, W, 4) of dtype uint8, uint16 (scaled by 255/65535),
  bool (True -> 255), float in [0, 1], or another integer dtype whose values lie in [0, 255].
* **torch tensors** of the same dtypes, (H, W), (C, H, W) or (H, W, C) on any device. A 3-D tensor is
  read as CHW when its first dimension is 1, 3 or 4 and its last is not; otherwise as HWC.

Transparency (alpha channel or a transparent palette entry) is composited over a **white** background.
"""

from __future__ import annotations

import io
import logging
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

if TYPE_CHECKING:
    import torch

logger = logging.getLogger(__name__)

ImageInput: TypeAlias = "str | os.PathLike[str] | Image.Image | np.ndarray | torch.Tensor"

IMAGE_SUFFIXES: frozenset[str] = frozenset(
    {".bmp", ".gif", ".jpeg", ".jpg", ".pbm", ".pgm", ".png", ".pnm", ".ppm", ".tif", ".tiff", ".webp"}
)
"""Lower-case file suffixes that `iter_image_files` treats as images."""

_ALPHA_MODES = frozenset({"RGBA", "RGBa", "LA", "La", "PA"})
_INT16_MODES = frozenset({"I;16", "I;16L", "I;16B", "I;16N"})
_FLOAT_TOLERANCE = 1e-3  # float inputs may overshoot [0, 1] by rounding noise; beyond that is an error


class ImageLoadError(ValueError):
    """An input could not be turned into an RGB image; the message says why and what to do."""


class ImageTooLargeError(ImageLoadError):
    """An encoded image has more pixels than allowed (a decompression bomb, or just too large)."""


def load_image(image: ImageInput) -> np.ndarray:
    """Return `image` as a contiguous (H, W, 3) uint8 RGB array (see the module docstring for the rules).

    Raises `FileNotFoundError` for a missing path and `ImageLoadError` (a `ValueError`) for anything else
    that is not a usable image: directories, empty, corrupt or truncated files, unsupported modes,
    shapes or dtypes, NaNs and out-of-range values.

    Example::

        rgb = load_image("photo.jpg")  # (H, W, 3) uint8
    """
    if isinstance(image, (str, os.PathLike)):
        rgb = _load_path(Path(image))
    elif isinstance(image, Image.Image):
        rgb = _pil_to_rgb(image, source="PIL image")
    elif isinstance(image, np.ndarray):
        rgb = _array_to_rgb(image, source="array")
    elif _is_tensor(image):
        rgb = _array_to_rgb(_tensor_to_hwc(image), source="tensor")
    else:
        raise TypeError(
            f"cannot load an image from {type(image).__name__}; pass a file path, a PIL image, "
            "a numpy array or a torch tensor"
        )
    return np.ascontiguousarray(rgb)


def iter_image_files(root: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield the image files under `root` (recursively), sorted by path, chosen by `IMAGE_SUFFIXES`.

    Hidden files and folders (names starting with ".") are skipped. A `root` that is itself an image
    file yields just that file.
    """
    root = Path(root)
    if not root.exists():
        raise FileNotFoundError(f"image folder {root} does not exist")
    if root.is_file():
        if root.suffix.lower() not in IMAGE_SUFFIXES:
            raise ValueError(f"{root} is not an image file (known suffixes: {sorted(IMAGE_SUFFIXES)})")
        yield root
        return
    found: list[Path] = []
    for folder, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        found.extend(
            Path(folder, name)
            for name in filenames
            if not name.startswith(".") and Path(name).suffix.lower() in IMAGE_SUFFIXES
        )
    yield from sorted(found)


def load_image_bytes(data: bytes, *, max_pixels: int | None = None, source: str = "image data") -> np.ndarray:
    """Decode an encoded image file held in memory (PNG, JPEG, ...) by the rules of :func:`load_image`.

    The header is read first: an image of more than ``max_pixels`` pixels raises `ImageTooLargeError`
    before any pixel is decoded (Pillow's own decompression-bomb guard also stays on). Empty, corrupt
    or truncated data raises `ImageLoadError`.
    """
    if not data:
        raise ImageLoadError(f"{source} is empty (0 bytes)")
    return _decode(io.BytesIO(data), source, max_pixels)


def _load_path(path: Path) -> np.ndarray:
    if not path.exists():
        raise FileNotFoundError(f"image file {path} does not exist")
    if path.is_dir():
        raise ImageLoadError(f"{path} is a directory, not an image file; use iter_image_files() for folders")
    if path.stat().st_size == 0:
        raise ImageLoadError(f"image file {path} is empty (0 bytes)")
    return _decode(path, str(path), None)


def _decode(file: Path | io.BytesIO, source: str, max_pixels: int | None) -> np.ndarray:
    """Open, check the size from the header, decode fully, apply EXIF orientation, convert to RGB."""
    try:
        with Image.open(file) as img:
            if max_pixels is not None and img.width * img.height > max_pixels:
                raise ImageTooLargeError(
                    f"{source} is {img.width}x{img.height} pixels; the limit is {max_pixels:,} pixels"
                )
            img.load()  # decode now so that truncated data fails here, not later
            img = ImageOps.exif_transpose(img)
            return _pil_to_rgb(img, source=source)
    except Image.DecompressionBombError as e:
        raise ImageTooLargeError(
            f"{source} is too large to decode safely ({e}); if you trust the file, raise "
            "PIL.Image.MAX_IMAGE_PIXELS before loading it"
        ) from e
    except UnidentifiedImageError as e:
        raise ImageLoadError(f"{source} is not an image Pillow can read (unknown or corrupt format)") from e
    except OSError as e:
        raise ImageLoadError(f"could not decode {source}: {e} (the file may be truncated or corrupt)") from e


def _pil_to_rgb(img: Image.Image, *, source: str) -> np.ndarray:
    mode = img.mode
    if img.width == 0 or img.height == 0:
        raise ImageLoadError(f"{source} has zero size ({img.width}x{img.height})")
    if mode in _INT16_MODES:
        return _array_to_rgb(np.asarray(img).astype(np.uint16), source=source)
    if mode == "I":
        # 32-bit integer images come almost always from 16-bit files (older Pillow, TIFF): read as 16-bit.
        return _array_to_rgb(np.clip(np.asarray(img), 0, 65535).astype(np.uint16), source=source)
    if mode == "F":
        return _array_to_rgb(np.asarray(img, dtype=np.float32), source=source)
    try:
        if mode in _ALPHA_MODES or "transparency" in img.info:
            return _array_to_rgb(np.asarray(img.convert("RGBA")), source=source)
        return np.asarray(img if mode == "RGB" else img.convert("RGB"))
    except (ValueError, OSError) as e:
        raise ImageLoadError(f"cannot convert {source} from mode {mode!r} to RGB: {e}") from e


def _is_tensor(obj: Any) -> bool:
    # A tensor can only exist if torch has been imported, so there is no need to import it here.
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(obj, torch.Tensor)


def _tensor_to_hwc(tensor: torch.Tensor) -> np.ndarray:
    import torch

    t = tensor.detach().cpu()
    if t.dtype in (torch.float16, torch.bfloat16):
        t = t.float()
    if t.ndim == 3 and t.shape[0] in (1, 3, 4) and t.shape[-1] not in (1, 3, 4):
        t = t.permute(1, 2, 0)
    elif t.ndim not in (2, 3):
        raise ImageLoadError(
            f"tensor images must be (H, W), (C, H, W) or (H, W, C); got shape {tuple(tensor.shape)}"
            + ("; index the batch first, e.g. images[0]" if t.ndim == 4 else "")
        )
    return t.numpy()


def _array_to_rgb(arr: np.ndarray, *, source: str) -> np.ndarray:
    """Normalise dtype then channels of an (H, W[, C]) array to (H, W, 3) uint8."""
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if arr.ndim != 3 or arr.shape[2] not in (1, 3, 4):
        hint = "; transpose CHW arrays to HWC first" if arr.ndim == 3 and arr.shape[0] in (1, 3, 4) else ""
        raise ImageLoadError(
            f"{source} must have shape (H, W), (H, W, 1), (H, W, 3) or (H, W, 4); got {arr.shape}{hint}"
        )
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ImageLoadError(f"{source} has zero size: shape {arr.shape}")
    arr = _to_uint8(arr, source=source)
    channels = arr.shape[2]
    if channels == 1:
        return np.repeat(arr, 3, axis=2)
    if channels == 4:
        return _composite_on_white(arr)
    return arr


def _to_uint8(arr: np.ndarray, *, source: str) -> np.ndarray:
    kind = arr.dtype.kind
    if arr.dtype == np.uint8:
        return arr
    if kind == "b":
        return arr.astype(np.uint8) * np.uint8(255)
    if arr.dtype == np.uint16:
        return ((arr.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)
    if kind == "f":
        if not np.isfinite(arr).all():
            raise ImageLoadError(f"{source} contains NaN or infinite values")
        lo, hi = float(arr.min()), float(arr.max())
        if lo < -_FLOAT_TOLERANCE or hi > 1 + _FLOAT_TOLERANCE:
            raise ImageLoadError(
                f"float {source} values must lie in [0, 1]; got [{lo:.4g}, {hi:.4g}] "
                "(divide 0-255 data by 255, or pass it as uint8)"
            )
        return np.round(np.clip(arr, 0.0, 1.0) * 255.0).astype(np.uint8)
    if kind in "iu":
        lo, hi = int(arr.min()), int(arr.max())
        if lo < 0 or hi > 255:
            raise ImageLoadError(
                f"integer {source} of dtype {arr.dtype} must hold values in [0, 255]; got [{lo}, {hi}]"
            )
        return arr.astype(np.uint8)
    raise ImageLoadError(
        f"{source} has unsupported dtype {arr.dtype}; use uint8, uint16, bool or float in [0, 1]"
    )


def _composite_on_white(rgba: np.ndarray) -> np.ndarray:
    """(H, W, 4) uint8 -> (H, W, 3) uint8 with colour * alpha + white * (1 - alpha), rounded."""
    alpha = rgba[:, :, 3:].astype(np.uint16)
    mixed = rgba[:, :, :3].astype(np.uint16) * alpha + 255 * (255 - alpha) + 127
    return (mixed // 255).astype(np.uint8)


def as_rgb_array(image: np.ndarray | Image.Image) -> np.ndarray:
    """An (H, W, 3) uint8 RGB array from an array of that form or a PIL image."""
    if not isinstance(image, np.ndarray):
        if not isinstance(image, Image.Image):
            raise TypeError(f"image must be an (H, W, 3) uint8 numpy array or a PIL image, got {type(image)}")
        image = np.array(image.convert("RGB"))
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8 or 0 in image.shape:
        raise ValueError(
            f"image must be a non-empty (H, W, 3) uint8 RGB array, got shape {image.shape} and dtype "
            f"{image.dtype}; load files with grounded_sam.io.load_image"
        )
    return image
