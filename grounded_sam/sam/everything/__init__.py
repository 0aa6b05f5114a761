"""Segment everything: prompts over the whole image (a point grid or one box per object) -> every mask.

:class:`MaskGenerator` (``generator.py``) runs the steps; the other modules are its parts: prompt boxes
(``object_aware``), staged decoding and filters (``candidates``, ``iou_gate``), full-resolution masks
(``full_resolution``, ``tiled_logits``, ``tiled_mask``), batches decoded side by side
(``batch_workers``) and the pure mask helpers (``mask_ops``).
"""

from grounded_sam.sam.everything.generator import EverythingConfig, MaskGenerator

__all__ = ["EverythingConfig", "MaskGenerator"]
