"""Deployment on ONNX Runtime: export a SAM model's encoder and decoder, and a predictor that runs them.

Needs the ``onnx`` extra (``pip install grounded_sam[onnx]``): onnx, onnxruntime and onnxscript.

Example:
    >>> from grounded_sam.sam.onnx import OnnxSamPredictor, export_onnx
    >>> export_onnx("demo_sam", "exported/demo")  # doctest: +SKIP
    >>> predictor = OnnxSamPredictor("exported/demo")  # doctest: +SKIP
"""

try:
    import onnx  # noqa: F401
    import onnxruntime  # noqa: F401
except ImportError as error:  # pragma: no cover - depends on the environment
    raise ImportError(
        "ONNX export and the ONNX Runtime predictor need the onnx extra: "
        f"pip install 'grounded_sam[onnx]' ({error})"
    ) from error

from grounded_sam.sam.onnx.config import OnnxModelConfig
from grounded_sam.sam.onnx.export import export_onnx
from grounded_sam.sam.onnx.predictor import OnnxSamPredictor

__all__ = ["OnnxModelConfig", "OnnxSamPredictor", "export_onnx"]
