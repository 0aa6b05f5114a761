"""Segment Anything, written in this package: the network parts, builders, registry and predictor.

This package knows nothing about text; :mod:`grounded_sam.pipeline` joins it to the text stages.
"""

from grounded_sam.sam.build import build_sam, build_sam_from_config, load_sam
from grounded_sam.sam.everything import EverythingConfig, MaskGenerator
from grounded_sam.sam.modeling.config import SamConfig, TinyViTConfig, ViTConfig
from grounded_sam.sam.modeling.sam import Sam
from grounded_sam.sam.predictor import ImageEmbedding, SamPredictor
from grounded_sam.sam.registry import ModelSpec, get_spec, list_models
from grounded_sam.sam.zoom import ZoomConfig, ZoomPredictor

__all__ = [
    "EverythingConfig",
    "ImageEmbedding",
    "MaskGenerator",
    "ModelSpec",
    "OnnxSamPredictor",
    "Sam",
    "SamConfig",
    "SamPredictor",
    "TinyViTConfig",
    "ViTConfig",
    "ZoomConfig",
    "ZoomPredictor",
    "build_sam",
    "build_sam_from_config",
    "export_onnx",
    "get_spec",
    "list_models",
    "load_sam",
]


def __getattr__(name: str) -> object:
    """The ONNX names load on first use: they need the optional ``onnx`` extra."""
    if name in ("OnnxSamPredictor", "export_onnx"):
        from grounded_sam.sam import onnx

        return getattr(onnx, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
