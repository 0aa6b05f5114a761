"""Inpainting: remove what a mask covers (OpenCV) or replace it from a text prompt (diffusers, optional).

Example:
    >>> from grounded_sam.inpaint import inpaint
    >>> clean = inpaint(image, result.masks)  # doctest: +SKIP
"""

from grounded_sam.inpaint.api import BACKENDS, Backend, as_mask, dilate_mask, inpaint
from grounded_sam.inpaint.settings import ReplaceSettings

__all__ = ["BACKENDS", "Backend", "ReplaceSettings", "as_mask", "dilate_mask", "inpaint"]
