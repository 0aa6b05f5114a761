"""Geometry between an image and SAM's square input: resize the longest side, scale coordinates."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image


def resized_shape(height: int, width: int, long_side: int) -> tuple[int, int]:
    """(H, W) after scaling so that the longer side becomes ``long_side`` (rounded half up)."""
    scale = long_side / max(height, width)
    return int(height * scale + 0.5), int(width * scale + 0.5)


def resize_longest_side(image: np.ndarray, long_side: int) -> np.ndarray:
    """Resize an (H, W, 3) uint8 image so its longer side is ``long_side``, with Pillow's bilinear filter.

    Pillow's filter (antialiased on downscaling) is what the released SAM models saw in training.
    """
    new_h, new_w = resized_shape(image.shape[0], image.shape[1], long_side)
    if (new_h, new_w) == image.shape[:2]:
        return image
    return np.asarray(Image.fromarray(image).resize((new_w, new_h), Image.Resampling.BILINEAR))


def scale_coords(coords: torch.Tensor, original_size: tuple[int, int], long_side: int) -> torch.Tensor:
    """Map (..., 2) XY pixel coordinates of the original image into the resized image's frame (float32)."""
    old_h, old_w = original_size
    new_h, new_w = resized_shape(old_h, old_w, long_side)
    # Scaled in float64 and rounded once, so results do not depend on the caller's dtype.
    factors = torch.tensor([new_w / old_w, new_h / old_h], dtype=torch.float64, device=coords.device)
    return (coords.to(torch.float64) * factors).to(torch.float32)


def scale_boxes(boxes: torch.Tensor, original_size: tuple[int, int], long_side: int) -> torch.Tensor:
    """Map (N, 4) XYXY boxes of the original image into the resized image's frame."""
    return scale_coords(boxes.reshape(-1, 2, 2), original_size, long_side).reshape(-1, 4)


def normalize_and_pad(image: torch.Tensor, mean: torch.Tensor, std: torch.Tensor, side: int) -> torch.Tensor:
    """(B, 3, h, w) RGB in 0..255 → normalised with (3, 1, 1) ``mean`` / ``std``, zero-padded bottom/right
    to (B, 3, side, side): the encoder input that SAM's pre-processing makes."""
    image = (image - mean) / std
    return F.pad(image, (0, side - image.shape[-1], 0, side - image.shape[-2]))
