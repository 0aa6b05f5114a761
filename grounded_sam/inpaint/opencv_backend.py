"""Object removal with OpenCV's fast-marching (Telea) or Navier-Stokes inpainting."""

from __future__ import annotations

from typing import Literal

import cv2
import numpy as np

Method = Literal["telea", "ns"]
_FLAGS = {"telea": cv2.INPAINT_TELEA, "ns": cv2.INPAINT_NS}


def remove_region(
    image: np.ndarray, mask: np.ndarray, *, method: Method = "telea", radius: int = 3
) -> np.ndarray:
    """Fill ``mask`` ((H, W) bool) of ``image`` ((H, W, 3) uint8) from its surroundings; (H, W, 3) uint8.

    Pixels outside the mask are returned unchanged.
    """
    if method not in _FLAGS:
        raise ValueError(f"unknown OpenCV inpainting method {method!r}; choose 'telea' or 'ns'")
    if radius < 1:
        raise ValueError(f"radius must be >= 1 pixel; got {radius}")
    filled = cv2.inpaint(
        np.ascontiguousarray(image), mask.astype(np.uint8) * np.uint8(255), radius, _FLAGS[method]
    )
    out = image.copy()
    out[mask] = filled[mask]
    return out
