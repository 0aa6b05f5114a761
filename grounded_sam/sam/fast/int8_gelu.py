"""An int8 linear layer with its GELU fused, for the first layer of the image encoders' MLPs.

The int8 encoder (:mod:`grounded_sam.sam.fast.int8`) runs each MLP as ``lin1`` -> GELU -> ``lin2``; a
separate GELU is a full float32 pass over the widest activation of every block (3 % of ViT-B's int8
encoder time on AVX2). :class:`Int8LinearGelu` has oneDNN apply the exact (erf) GELU to the int8 product
before it leaves the kernel. Its input is quantized here, per tensor to 7 bits like
:class:`~grounded_sam.sam.fast.int8.Int8Linear`'s (so AVX2's 16-bit pair sums cannot saturate), and its
weight is a plain int8 tensor with per-output-channel scales: no deprecated quantized tensors.
"""

from __future__ import annotations

import torch
from torch import nn

from grounded_sam.sam.modeling.common import FeedForward
from grounded_sam.sam.modeling.tiny_vit import NormMlp

__all__ = ["Int8LinearGelu", "fuse_gelus", "input_qparams", "weight_scales"]

_INPUT_LEVELS = 127  # 7 bits
# MLPs that run `lin2(act(lin1(x)))`, and the name of their first layer.
_FIRST_LAYERS: dict[type[nn.Module], str] = {FeedForward: "lin1", NormMlp: "fc1"}


def weight_scales(weight: torch.Tensor) -> torch.Tensor:
    """(out,) float scales of a symmetric per-output-channel int8 quantization of ``weight`` (out, in)."""
    return (weight.abs().amax(dim=1) / 127).clamp_min(1e-12)


def input_qparams(low: float, high: float) -> tuple[float, int]:
    """(scale, zero point) quantizing inputs in [``low``, ``high``] (widened to hold 0) to 7 bits."""
    low, high = min(low, 0.0), max(high, 0.0)
    scale = max(high - low, 1e-8) / _INPUT_LEVELS
    return scale, round(-low / scale)


class Int8LinearGelu(nn.Module):
    """``F.gelu(linear(x))`` with an int8 weight (per output channel) and a dynamically quantized int8 input.

    Input (..., in_features) float32 → output (..., out_features) float32. Inference only.
    """

    def __init__(self, linear: nn.Linear) -> None:
        super().__init__()
        weight = linear.weight.detach().float()
        self.out_features, self.in_features = weight.shape
        scales = weight_scales(weight)
        quantized = torch.round(weight / scales[:, None]).to(torch.int8)
        self._weight = torch.ops.onednn.qlinear_prepack(quantized, None)
        self._scales = scales
        self._zero_points = torch.zeros(self.out_features, dtype=torch.long)
        self.bias = None if linear.bias is None else linear.bias.detach().float()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.reshape(-1, self.in_features).float()
        scale, zero_point = input_qparams(*(value.item() for value in torch.aminmax(rows)))
        quantized = torch.mul(rows, 1 / scale).add_(zero_point).round_().clamp_(0, _INPUT_LEVELS)
        out = torch.ops.onednn.qlinear_pointwise(
            quantized.to(torch.uint8),
            scale,
            zero_point,
            self._weight,
            self._scales,
            self._zero_points,
            self.bias,
            1.0,
            0,
            torch.float32,
            "gelu",
            [],
            "none",  # the exact, erf GELU: nn.GELU's default
        )
        return out.view(*x.shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, int8, GELU"


def fuse_gelus(encoder: nn.Module) -> None:
    """In place: the first layer of each of ``encoder``'s MLPs (ViT's :class:`FeedForward`, TinyViT's
    :class:`NormMlp`) with an exact ``nn.GELU`` becomes an :class:`Int8LinearGelu`, the GELU an identity."""
    for module in list(encoder.modules()):
        name = _FIRST_LAYERS.get(type(module))
        act = getattr(module, "act", None)
        if name is None or not (isinstance(act, nn.GELU) and act.approximate == "none"):
            continue
        first = getattr(module, name)
        if type(first) is nn.Linear:
            setattr(module, name, Int8LinearGelu(first))
            module.act = nn.Identity()
