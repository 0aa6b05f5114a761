"""SAM's speed-ups as drop-in modules, swapped into a plain network by one :func:`accelerate` call.

The plain network (:mod:`grounded_sam.sam.modeling`) reads as the paper's figure. Each fast module here is
a subclass of one plain part that adds no parameter and changes only how the part computes (same
state-dict keys, same results up to float rounding):

* :class:`~grounded_sam.sam.fast.attention.FastAttention`: projections applied on the cheaper side of each
  attention, and projected once when every prompt shares them;
* :class:`~grounded_sam.sam.fast.transformer.FastTwoWayTransformer` (and its blocks): the image side made
  once for many prompt batches; per-prompt image tokens updated in place;
* :class:`~grounded_sam.sam.fast.mask_decoder.FastMaskDecoder`: staged decoding (IoUs before masks) and a
  banded upscaling into reused memory;
* :class:`~grounded_sam.sam.fast.image_encoder.FastRelPosAttention` and
  :class:`~grounded_sam.sam.fast.image_encoder.FastEncoderBlock`: the ViT encoder's relative-position
  bias built a chunk at a time into one buffer, q/k/v projected apart, the MLP in bands of rows;
* :class:`~grounded_sam.sam.fast.tiny_vit.FastWindowAttention`: TinyViT's offset bias gathered once.

``precision="int8"`` encodes through :func:`~grounded_sam.sam.fast.int8.int8_encoder`: a cached copy of the
image encoder with int8 linear layers (x86 CPUs), made beside the float network rather than swapped into it.

Segment everything adds :mod:`~grounded_sam.sam.fast.gated_decoding` and
:mod:`~grounded_sam.sam.fast.iou_gate` on top of them. The builders (``build_sam``, ``load_sam``,
``build_sam_from_config``) accelerate by default; ``accelerate=False`` keeps the plain network. The memory
budgets of every fast path are in :mod:`grounded_sam.sam.budgets`.
"""

from __future__ import annotations

from torch import nn

from grounded_sam.sam.fast.attention import FastAttention
from grounded_sam.sam.fast.image_encoder import FastEncoderBlock, FastRelPosAttention
from grounded_sam.sam.fast.mask_decoder import FastMaskDecoder
from grounded_sam.sam.fast.tiny_vit import FastWindowAttention
from grounded_sam.sam.fast.transformer import FastTwoWayAttentionBlock, FastTwoWayTransformer
from grounded_sam.sam.modeling.attention import Attention
from grounded_sam.sam.modeling.image_encoder import EncoderBlock, RelPosAttention
from grounded_sam.sam.modeling.mask_decoder import MaskDecoder
from grounded_sam.sam.modeling.tiny_vit import WindowAttention
from grounded_sam.sam.modeling.transformer import TwoWayAttentionBlock, TwoWayTransformer

_FAST: dict[type[nn.Module], type[nn.Module]] = {
    Attention: FastAttention,
    TwoWayAttentionBlock: FastTwoWayAttentionBlock,
    TwoWayTransformer: FastTwoWayTransformer,
    MaskDecoder: FastMaskDecoder,
    RelPosAttention: FastRelPosAttention,
    EncoderBlock: FastEncoderBlock,
    WindowAttention: FastWindowAttention,
}

__all__ = ["accelerate", "is_accelerated", "plain"]


def accelerate(model: nn.Module) -> nn.Module:
    """Swap every plain part of ``model`` (a ``Sam`` or any part of one) for its fast drop-in, in place.

    The fast classes only add methods, so each module keeps its parameters, buffers, device and dtype;
    ``model`` is returned for chaining. Calling it twice changes nothing.
    """
    for module in model.modules():
        fast = _FAST.get(type(module))
        if fast is not None:
            module.__class__ = fast
    return model


def plain(model: nn.Module) -> nn.Module:
    """The inverse of :func:`accelerate`: every fast part back to its plain class, in place."""
    slow = {fast: plain_class for plain_class, fast in _FAST.items()}
    for module in model.modules():
        original = slow.get(type(module))
        if original is not None:
            module.__class__ = original
    return model


def is_accelerated(model: nn.Module) -> bool:
    """Whether ``model``'s mask decoder (``model`` a ``Sam``, or a decoder itself) runs the fast paths."""
    decoder = getattr(model, "mask_decoder", model)
    return isinstance(decoder, FastMaskDecoder)
