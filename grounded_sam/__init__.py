"""grounded_sam: text-prompted, open-vocabulary segmentation with Segment Anything.

Public entry points are imported lazily so that ``import grounded_sam`` stays fast and
pulls in no heavy optional dependency.
"""

from __future__ import annotations

from importlib import import_module
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

try:
    __version__ = version("grounded_sam")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0"

_LAZY = {
    "GroundedSAM": "grounded_sam.pipeline",
    "LangSAM": "grounded_sam.compat",
    "MaskGenerator": "grounded_sam.sam.everything",
    "Result": "grounded_sam.result",
    "SamPredictor": "grounded_sam.sam.predictor",
    "build_sam": "grounded_sam.sam.build",
    "list_models": "grounded_sam.sam.registry",
    "load_image": "grounded_sam.io",
    "predict": "grounded_sam.api",
}

__all__ = [
    "GroundedSAM",
    "LangSAM",
    "MaskGenerator",
    "Result",
    "SamPredictor",
    "__version__",
    "build_sam",
    "list_models",
    "load_image",
    "predict",
]

if TYPE_CHECKING:
    from grounded_sam.api import predict
    from grounded_sam.compat import LangSAM
    from grounded_sam.io import load_image
    from grounded_sam.pipeline import GroundedSAM
    from grounded_sam.result import Result
    from grounded_sam.sam.build import build_sam
    from grounded_sam.sam.everything import MaskGenerator
    from grounded_sam.sam.predictor import SamPredictor
    from grounded_sam.sam.registry import list_models


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'grounded_sam' has no attribute {name!r}")
    return getattr(import_module(module), name)
