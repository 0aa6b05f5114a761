"""Feed-forward blocks of Grounding DINO, faster for inference on a CPU.

Two measures, each kept because it measurably helped the whole model on 2 cores:

- **Bands of rows** (:func:`feed_forward_in_bands`): the encoder widens each of its ~18k image tokens
  (800 px) to 2048 floats, a 146 MB hidden activation. That is larger than glibc's largest mmap
  threshold (32 MiB), so fresh memory from the OS on every call, whose page faults and zeroing cost about
  as much as the matrix products. Bands whose hidden part stays under :data:`BAND_BYTES` are reused from
  the heap and stay in cache: ~0.3 s less for the six encoder blocks. (Swin's smaller MLPs gained
  nothing measurable from bands.)
- **Activation fused into the first product** (:func:`linear_activation`): torch's oneDNN
  linear-pointwise kernel, the one ``torch.compile``'s CPU backend emits, adds the bias and applies ReLU
  or exact GELU inside the matrix product, saving a pass over the wide hidden activation: ~0.1 s for
  the Swin and encoder blocks together. Anything it does not cover takes the plain route.

Results equal the plain blocks' up to float rounding (row-wise products, same activations).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from torch.nn import functional as F

# Hidden activation per band: well under the 32 MiB mmap threshold, and few enough bands that the extra
# kernel launches stay negligible.
BAND_BYTES = 16 * 2**20


def fusable_activation(activation: Callable[[torch.Tensor], torch.Tensor]) -> str | None:
    """``"relu"`` or ``"gelu"`` when ``activation`` is exactly torch's ReLU or exact (erf) GELU, as a
    module or through ``transformers``' ``GELUActivation`` wrapper; None for anything else."""
    if isinstance(activation, nn.ReLU) or activation is F.relu or activation is torch.relu:
        return "relu"
    if isinstance(activation, nn.GELU):
        return "gelu" if activation.approximate == "none" else None
    if activation is F.gelu or getattr(activation, "act", None) is F.gelu:  # transformers' GELUActivation
        return "gelu"
    return None


def linear_activation(
    tokens: torch.Tensor, layer: nn.Linear, activation: Callable[[torch.Tensor], torch.Tensor]
) -> torch.Tensor:
    """``activation(layer(tokens))`` for (..., C_in) tokens, in one oneDNN call on a CPU when it can.

    The fused kernel serves float32 CPU tensors without gradients and the activations that
    :func:`fusable_activation` names, while torch's oneDNN backend is built and enabled
    (``torch.backends.mkldnn.enabled``); everything else is computed as written.
    """
    kind = fusable_activation(activation)
    needs_grad = torch.is_grad_enabled() and (tokens.requires_grad or layer.weight.requires_grad)
    usable = torch.backends.mkldnn.is_available() and torch.backends.mkldnn.enabled
    fused_kernel = getattr(torch.ops.mkldnn, "_linear_pointwise", None) if usable else None
    if kind is None or needs_grad or fused_kernel is None or tokens.device.type != "cpu":
        return activation(layer(tokens))
    if tokens.dtype != torch.float32 or layer.weight.dtype != torch.float32:
        return activation(layer(tokens))
    return fused_kernel(tokens, layer.weight, layer.bias, kind, [], "none")


def feed_forward_in_bands(
    tokens: torch.Tensor,
    fc1: nn.Linear,
    activation: Callable[[torch.Tensor], torch.Tensor],
    fc2: nn.Linear,
    band_bytes: int = BAND_BYTES,
) -> torch.Tensor:
    """``fc2(activation(fc1(tokens)))`` for (..., C) tokens, computed in bands of rows.

    One band (no copy) when the whole hidden activation fits ``band_bytes``. Not differentiable through
    the bands: callers use the plain expression when gradients are needed.
    """
    rows = tokens.reshape(-1, tokens.shape[-1])
    hidden_row_bytes = fc1.out_features * tokens.element_size()
    band_rows = max(1, band_bytes // hidden_row_bytes)
    if rows.shape[0] <= band_rows:
        return fc2(linear_activation(tokens, fc1, activation))
    out = rows.new_empty(rows.shape[0], fc2.out_features)
    for start in range(0, rows.shape[0], band_rows):
        band = slice(start, start + band_rows)
        out[band] = fc2(linear_activation(rows[band], fc1, activation))
    return out.view(*tokens.shape[:-1], fc2.out_features)


class FusedMLP(nn.Module):
    """Drop-in for ``transformers``' ``SwinMLP`` (fc1 → activation → fc2) whose activation runs inside
    the first product (:func:`linear_activation`); shares the original's layers (same names)."""

    def __init__(self, original: nn.Module) -> None:
        super().__init__()
        self.fc1: nn.Linear = original.fc1
        self.fc2: nn.Linear = original.fc2
        self.activation_fn = original.activation_fn
        self.train(original.training)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        """(..., C) tokens → (..., C) tokens."""
        return self.fc2(linear_activation(hidden_states, self.fc1, self.activation_fn))
