"""``inpaint(image, mask)``: remove what a mask covers (OpenCV) or repaint it from a text prompt (diffusers).

Conventions: images are (H, W, 3) uint8 RGB; a mask is (H, W) — or an (N, H, W) stack, whose union is
used — of bool, 0/1 or 0/255 values, True where pixels are replaced. Outside the (dilated) mask the output
equals the input exactly.
"""

from __future__ import annotations

import logging
from typing import Any, Literal, get_args

import cv2
import numpy as np

from grounded_sam.inpaint.settings import ReplaceSettings
from grounded_sam.io import ImageInput, load_image

logger = logging.getLogger(__name__)

Backend = Literal["remove", "telea", "ns", "diffusers"]
BACKENDS: tuple[str, ...] = get_args(Backend)
DEFAULT_DILATE = 5


def as_mask(mask: Any, size: tuple[int, int]) -> np.ndarray:
    """A mask (see the module docstring) as one (H, W) bool array; raises with the expected shape if wrong."""
    arr = np.asarray(mask.detach().cpu() if hasattr(mask, "detach") else mask)
    if arr.ndim == 3:
        arr = arr.any(axis=0) if arr.dtype == bool else (arr != 0).any(axis=0)
    if arr.ndim != 2 or arr.shape != size:
        raise ValueError(
            f"mask must have shape (H, W) = {size} like the image (or (N, {size[0]}, {size[1]})); "
            f"got {np.asarray(mask).shape}"
        )
    if arr.dtype == bool:
        return arr
    if arr.dtype.kind not in "iuf" or not np.isin(arr, (0, 1, 255)).all():
        raise TypeError(f"mask must be bool or hold only 0/1 (or 0/255) values; got dtype {arr.dtype}")
    return arr != 0


def dilate_mask(mask: np.ndarray, pixels: int) -> np.ndarray:
    """(H, W) bool grown by ``pixels`` in every direction (elliptical structuring element); 0 is a no-op."""
    if pixels < 0:
        raise ValueError(f"dilate must be >= 0 pixels; got {pixels}")
    if pixels == 0 or not mask.any():
        return mask.copy()
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * pixels + 1, 2 * pixels + 1))
    return cv2.dilate(mask.astype(np.uint8), kernel) > 0


def inpaint(
    image: ImageInput,
    mask: Any,
    prompt: str | None = None,
    *,
    backend: Backend = "remove",
    dilate: int = DEFAULT_DILATE,
    radius: int = 3,
    settings: ReplaceSettings | None = None,
    pipeline: Any = None,
) -> np.ndarray:
    """Fill the masked region of ``image``; returns (H, W, 3) uint8 RGB of the image's size.

    Args:
        image: anything :func:`~grounded_sam.io.load_image` reads.
        mask: (H, W) or (N, H, W) bool / 0-1 / 0-255, True where pixels are replaced (e.g. ``result.masks``).
        prompt: what to paint instead (``backend="diffusers"`` only).
        backend: ``"remove"`` (= ``"telea"``) or ``"ns"``: OpenCV's Telea / Navier-Stokes fill from the
            surroundings; ``"diffusers"``: Stable Diffusion inpainting from ``prompt``.
        dilate: grow the mask by this many pixels first, so that object edges (anti-aliasing, shadows)
            are replaced too.
        radius: OpenCV's neighbourhood radius in pixels.
        settings, pipeline: diffusers only; a pipeline from
            :func:`~grounded_sam.inpaint.diffusers_backend.load_inpaint_pipeline` (loaded if None).

    An empty mask returns a copy of the image.

    Example:
        >>> clean = inpaint(image, result.masks, dilate=7)  # doctest: +SKIP
        >>> bike = inpaint(image, result.masks, "a red bicycle", backend="diffusers")  # doctest: +SKIP
    """
    if backend not in BACKENDS:
        raise ValueError(f"unknown inpainting backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    if prompt is not None and backend != "diffusers":
        raise ValueError(
            f"a prompt needs backend='diffusers' (the {backend!r} backend only removes); drop the prompt "
            "to remove the object"
        )
    pixels = load_image(image)
    region = dilate_mask(as_mask(mask, pixels.shape[:2]), dilate)
    if not region.any():
        logger.info("inpaint: the mask is empty, the image is returned unchanged")
        return pixels.copy()
    if backend == "diffusers":
        from grounded_sam.inpaint.diffusers_backend import replace_region

        if not prompt:
            raise ValueError("backend='diffusers' needs a prompt saying what to paint, e.g. 'a bicycle'")
        return replace_region(
            pixels, region, prompt, settings=settings or ReplaceSettings(), pipeline=pipeline
        )
    from grounded_sam.inpaint.opencv_backend import remove_region

    return remove_region(pixels, region, method="ns" if backend == "ns" else "telea", radius=radius)
