"""An int8 image encoder for x86 CPUs: the encoder's linear layers in int8, everything else in float32.

:func:`int8_encoder` turns a float image encoder (SAM's ViT, MobileSAM's TinyViT, or any encoder built of
``nn.Linear`` layers) into a copy whose linear layers are :class:`Int8Linear`: each weight quantized once
to int8 per output channel (symmetric), each input quantized per tensor on the fly, and the product run by
oneDNN's int8 matrix kernels with a float32 result; the first layer of each MLP is an
:class:`~grounded_sam.sam.fast.int8_gelu.Int8LinearGelu`, whose kernel applies the GELU too. Attention
scores and softmax, layer and batch norms and convolutions stay float32; so does the mask decoder, which
never sees this module (``benchmarks/bench_int8_attention.py`` shows why attention does too). Inputs
are quantized to 7 bits ("reduce_range"), so the 16-bit pair sums of AVX2's ``vpmaddubsw`` cannot
saturate: the same results on every x86 CPU, AVX2 or AVX-512.

The copy shares every non-linear parameter with the float encoder and is cached on it (outside its state
dict): weights loaded or edited later are quantized again at the next call. The plain network in
:mod:`grounded_sam.sam.modeling` knows nothing of this; the ViT's fast attention
(:class:`~grounded_sam.sam.fast.image_encoder.FastRelPosAttention`) gets its q, k and v through
:meth:`~grounded_sam.sam.fast.image_encoder.FastRelPosAttention.project_part`, which
:class:`Int8RelPosAttention` answers from three int8 layers.
"""

from __future__ import annotations

import copy
import itertools
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

from grounded_sam.sam.fast.image_encoder import FastRelPosAttention
from grounded_sam.sam.fast.int8_gelu import fuse_gelus, input_qparams, weight_scales
from grounded_sam.sam.modeling.image_encoder import RelPosAttention

__all__ = ["Int8Linear", "Int8RelPosAttention", "calibrating", "int8_encoder", "quantize_linears"]

# Where the int8 copy of an encoder is kept: an instance attribute, so not a submodule and not in the
# state dict.
_CACHE = "_int8_copy"


class Int8Linear(nn.Module):
    """``nn.Linear`` with an int8 weight (per output channel) and dynamically quantized int8 inputs.

    Input (..., in_features) float32 → output (..., out_features) float32. Inference only: no gradients.
    """

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None) -> None:
        super().__init__()
        self.out_features, self.in_features = weight.shape
        self.bias = None if bias is None else bias.detach()
        self._weight = weight.detach()  # the float model's tensor (shared), for repacking
        self._packed = _pack(self._weight.float(), None if bias is None else self.bias.float(), "onednn")
        # Calibrated (static) input quantization: (scale, zero point), or None for dynamic (the default).
        self.input_qparams: tuple[float, int] | None = None
        self.observed: tuple[float, float] | None = None  # (min, max) seen while calibrating

    @classmethod
    def from_linear(cls, linear: nn.Linear) -> Int8Linear:
        """The int8 version of ``linear`` (its weights quantized now; later edits to it are not seen)."""
        return cls(linear.weight, linear.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.float()
        if self.input_qparams is not None:
            scale, zero_point = self.input_qparams
            return torch.ops.quantized.linear_with_input_q_dq_qweight_dq_output_fp32(
                x, scale, zero_point, self._packed
            )
        # oneDNN runs a 3-d input (TinyViT's windows) as a batch of small products: up to 1.5x slower.
        rows = x.reshape(-1, self.in_features)
        out = torch.ops.quantized.linear_dynamic(rows, self._packed, True)
        return out.view(*x.shape[:-1], self.out_features)

    def observe(self, x: torch.Tensor) -> None:
        """Widen the calibration range (:attr:`observed`) to cover ``x``."""
        low, high = x.min().item(), x.max().item()
        if self.observed is not None:
            low, high = min(low, self.observed[0]), max(high, self.observed[1])
        self.observed = (low, high)

    def freeze_range(self) -> None:
        """Quantize inputs statically with the observed range (7 bits, as the dynamic path) from now on."""
        if self.observed is None:
            raise RuntimeError("this layer saw no input while calibrating")
        self.input_qparams = input_qparams(*self.observed)
        # Static input quantization exists for fbgemm's packed weights only.
        bias = None if self.bias is None else self.bias.float()
        self._packed = _pack(self._weight.float(), bias, "fbgemm")

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, int8"


def _pack(weight: torch.Tensor, bias: torch.Tensor | None, engine: str) -> Any:
    """The packed form of a symmetric per-output-channel int8 quantization of ``weight`` (out, in), for
    ``engine``'s kernels ("onednn" or "fbgemm"; the engine the process has when that one is not built in).
    oneDNN's dynamic int8 linear is 5-13 % faster than fbgemm's on AVX2 and AVX-512 alike, with the same
    7-bit inputs and so the same results."""
    scales = weight_scales(weight).double()
    zero_points = torch.zeros(weight.shape[0], dtype=torch.long)
    with warnings.catch_warnings():
        # torch 2.14 marks quantized tensors deprecated; fbgemm's packing still takes one.
        warnings.filterwarnings("ignore", message=".*quantized tensor creation", category=UserWarning)
        quantized = torch.quantize_per_channel(weight, scales, zero_points, 0, torch.qint8)
    with _quantized_engine(engine):
        return torch.ops.quantized.linear_prepack(quantized, bias)


@contextmanager
def _quantized_engine(name: str) -> Iterator[None]:
    """torch's quantized engine set to ``name`` (when built in) for the duration: ``linear_prepack`` packs
    for the engine in force, and the packed weight then runs with its own engine's kernels."""
    previous = torch.backends.quantized.engine
    if name in torch.backends.quantized.supported_engines:
        torch.backends.quantized.engine = name
    try:
        yield
    finally:
        torch.backends.quantized.engine = previous


class Int8RelPosAttention(FastRelPosAttention):
    """:class:`FastRelPosAttention` whose q, k and v come from three :class:`Int8Linear` (``qkv_parts``,
    which replace ``qkv``)."""

    qkv_parts: nn.ModuleList

    def project_part(self, x: torch.Tensor, index: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        part = self.qkv_parts[index]
        return part(x), part.bias


def quantize_linears(encoder: nn.Module) -> nn.Module:
    """A copy of ``encoder`` in which every ``nn.Linear`` is an :class:`Int8Linear` (an MLP's first layer
    and its GELU one :class:`~grounded_sam.sam.fast.int8_gelu.Int8LinearGelu`) and every ViT attention an
    :class:`Int8RelPosAttention`; all other parameters and buffers are the float encoder's own tensors
    (shared, not copied). ``encoder`` itself is unchanged."""
    shared: dict[int, Any] = {id(t): t for t in itertools.chain(encoder.parameters(), encoder.buffers())}
    with torch.inference_mode(False), torch.no_grad():
        quantized = copy.deepcopy(encoder, memo=shared)
        fuse_gelus(quantized)
        for module in list(quantized.modules()):
            if isinstance(module, RelPosAttention):
                module.__class__ = Int8RelPosAttention
                weight, bias = module.qkv.weight, module.qkv.bias
                thirds = [slice(i * weight.shape[1], (i + 1) * weight.shape[1]) for i in range(3)]
                module.qkv_parts = nn.ModuleList(
                    Int8Linear(weight[part], None if bias is None else bias[part]) for part in thirds
                )
                module.qkv = None  # the parts replace it
            for name, child in list(module.named_children()):
                if type(child) is nn.Linear:
                    setattr(module, name, Int8Linear.from_linear(child))
    return quantized


def int8_encoder(encoder: nn.Module) -> nn.Module:
    """The int8 version of a float image encoder (see the module docstring), made by
    :func:`quantize_linears` at the first call and kept on ``encoder`` until its linear weights change
    (a new state dict, an in-place edit), its device, or its train/eval mode does.

    Example:
        >>> embedding = int8_encoder(sam.image_encoder)(sam.preprocess(image))  # doctest: +SKIP
    """
    key = _weights_key(encoder)
    cached = encoder.__dict__.get(_CACHE)
    if isinstance(cached, _Int8Copy) and cached.key == key:
        return cached.module
    encoder.__dict__.pop(_CACHE, None)
    quantized = quantize_linears(encoder)
    encoder.__dict__[_CACHE] = _Int8Copy(key, quantized)
    return quantized


@contextmanager
def calibrating(quantized: nn.Module) -> Iterator[None]:
    """Calibrate the inputs of an int8 encoder (an :func:`int8_encoder` result) on what runs inside: every
    :class:`Int8Linear` records the range of its inputs, and at the end switches from dynamic (per call)
    to static input quantization with that range. An experiment for ``benchmarks/bench_sam.py``: static
    ranges clip on images unlike the calibration set and save little time, so the predictor stays dynamic.
    """
    layers = [m for m in quantized.modules() if isinstance(m, Int8Linear)]
    hooks = [layer.register_forward_pre_hook(lambda m, args: m.observe(args[0])) for layer in layers]
    try:
        yield
    finally:
        for hook in hooks:
            hook.remove()
    for layer in layers:
        layer.freeze_range()


def _weights_key(encoder: nn.Module) -> tuple[Any, ...]:
    """What the int8 copy depends on: each linear tensor's storage and version, the device and the mode."""
    tensors = (
        tensor
        for module in encoder.modules()
        if isinstance(module, nn.Linear)
        for tensor in (module.weight, module.bias)
        if tensor is not None
    )
    versions = tuple((t.data_ptr(), t._version, t.dtype, t.device) for t in tensors)
    return (*versions, encoder.training)


class _Int8Copy:
    """An encoder's cached int8 copy. Deep copies and pickles of the encoder (``torch.save(model)``) carry
    an empty one instead: the copy is re-made on demand, and fbgemm's packed weights are not saved."""

    def __init__(self, key: tuple[Any, ...] = (), module: nn.Module | None = None) -> None:
        self.key, self.module = key, module

    def __reduce__(self) -> tuple[type[_Int8Copy], tuple[()]]:
        return (_Int8Copy, ())
