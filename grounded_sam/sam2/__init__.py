"""SAM 2 / 2.1 through ``transformers``: a registry of the released checkpoints, builders and a predictor.

:class:`Sam2Predictor` speaks the interface of :class:`grounded_sam.sam.SamPredictor`, so it drops into
:class:`grounded_sam.pipeline.GroundedSAM`; :func:`build_sam2_video` gives the video tracker.
"""

from grounded_sam.sam2.build import build_sam2, build_sam2_video, is_sam2_folder, uses_sam2
from grounded_sam.sam2.predictor import Sam2ImageEmbedding, Sam2Predictor
from grounded_sam.sam2.registry import Sam2Spec, get_sam2_spec, is_sam2_name, list_sam2_models

__all__ = [
    "Sam2ImageEmbedding",
    "Sam2Predictor",
    "Sam2Spec",
    "build_sam2",
    "build_sam2_video",
    "get_sam2_spec",
    "is_sam2_folder",
    "is_sam2_name",
    "list_sam2_models",
    "uses_sam2",
]
