"""Faster CPU paths for ``transformers``' Grounding DINO, swapped into one model instance.

The deformable attention and the encoder's deformable layers come from
:mod:`grounded_sam.text.gdino_deformable`, the feed-forward blocks from :mod:`grounded_sam.text.gdino_mlp`;
the image-text fusion attention, folded so the image tokens are
never projected into the wide attention space, lives here. :func:`accelerate` puts these replacements
into a loaded ``GroundingDinoForObjectDetection``; the parameters, their names and the outputs (up to
float rounding, ~1e-6) stay the same. It changes only the instance it is given, never the
``transformers`` classes.
"""

from __future__ import annotations

import logging

import torch
from torch import nn
from torch.nn import functional as F

from grounded_sam.text.gdino_deformable import DeformableAttention, EncoderDeformableLayer
from grounded_sam.text.gdino_mlp import FusedMLP

logger = logging.getLogger(__name__)

_FUSION_PROJECTIONS = (
    "vision_proj",
    "text_proj",
    "values_vision_proj",
    "values_text_proj",
    "out_vision_proj",
    "out_text_proj",
)


class FoldedTextImageAttention(nn.Module):
    """Drop-in for ``transformers``' ``GroundingDinoBiMultiHeadAttention`` (image ↔ text cross-attention)
    that never projects the image tokens into the wide attention space.

    With few text tokens T, the query, value and output projections are folded into the text side:
    scores = image @ (W_q^T keys) instead of (image @ W_q^T) @ keys, the image output is
    probabilities @ (text values @ W_out^T), and the text output pools the raw image tokens before the
    value projection. Same results up to float rounding, about (E / (heads * T)) fewer multiply-adds per
    image token (E = 1024, heads = 4 in Grounding DINO); never more. The six projection layers are the
    original module's own, under the same names.
    """

    def __init__(self, original: nn.Module) -> None:
        super().__init__()
        for name in _FUSION_PROJECTIONS:
            setattr(self, name, getattr(original, name))
        self.num_heads: int = original.num_heads
        self.head_dim: int = original.head_dim
        self.embed_dim: int = original.embed_dim
        self.scale: float = original.scale
        self.dropout: float = original.dropout
        self.train(original.training)

    def forward(
        self,
        vision_features: torch.Tensor,
        text_features: torch.Tensor,
        vision_attention_mask: torch.Tensor | None = None,
        text_attention_mask: torch.Tensor | None = None,
    ) -> tuple[tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
        """Image (B, N, C) and text (B, T, C) features, masks True at padding → ((image update
        (B, N, C), image→text probabilities (B*heads, N, T)), (text update (B, T, C), text→image
        probabilities (B*heads, T, N)))."""
        batch, pixels, channels = vision_features.shape
        tokens, heads, width = text_features.shape[1], self.num_heads, self.head_dim
        keys = self.text_proj(text_features).view(batch, tokens, heads, width)
        query_weight = self.vision_proj.weight.view(heads, width, channels)
        folded = torch.einsum("bthd,hdc->bcht", keys, query_weight) * self.scale
        offset = torch.einsum("bthd,hd->bht", keys, _bias(self.vision_proj, heads, width)) * self.scale
        scores = torch.baddbmm(offset.reshape(batch, 1, heads * tokens), vision_features, folded.flatten(2))
        scores = scores.view(batch, pixels, heads, tokens)
        # transformers' stabilisation, kept for identical results: global max, clamp, per-row max, clamp
        scores = torch.clamp(scores - scores.max(), min=-50000, max=50000)
        to_image = scores.permute(0, 2, 3, 1).contiguous()  # (B, heads, T, N)
        to_image = torch.clamp(to_image - to_image.amax(-1, keepdim=True), min=-50000, max=50000)
        if vision_attention_mask is not None:
            to_image = to_image.masked_fill(vision_attention_mask[:, None, None, :], float("-inf"))
        to_image = to_image.softmax(-1)
        if text_attention_mask is not None:
            scores = scores.masked_fill(text_attention_mask[:, None, None, :], float("-inf"))
        to_text = scores.softmax(-1)  # (B, N, heads, T)
        text_probs = F.dropout(to_image, p=self.dropout, training=self.training)
        image_probs = F.dropout(to_text, p=self.dropout, training=self.training)

        text_values = self.values_text_proj(text_features).view(batch, tokens, heads, width)
        out_weight = self.out_vision_proj.weight.view(channels, heads, width)
        mixed = torch.einsum("bthd,chd->bhtc", text_values, out_weight).reshape(batch, heads * tokens, -1)
        vision_out = torch.bmm(image_probs.view(batch, pixels, heads * tokens), mixed)
        if self.out_vision_proj.bias is not None:
            vision_out = vision_out + self.out_vision_proj.bias

        pooled = torch.bmm(text_probs.view(batch, heads * tokens, pixels), vision_features)
        value_weight = self.values_vision_proj.weight.view(heads, width, channels)
        text_out = torch.einsum("bhtc,hdc->bthd", pooled.view(batch, heads, tokens, -1), value_weight)
        # the value bias, weighted by each row's probability mass (1 unless dropout or masking changed it)
        mass = text_probs.sum(-1).transpose(1, 2)[..., None]
        text_out = text_out + mass * _bias(self.values_vision_proj, heads, width)
        text_out = self.out_text_proj(text_out.reshape(batch, tokens, self.embed_dim))

        image_weights = to_text.permute(0, 2, 1, 3).reshape(batch * heads, pixels, tokens)
        return (vision_out, image_weights), (text_out, to_image.view(batch * heads, tokens, pixels))


def _bias(layer: nn.Linear, heads: int, width: int) -> torch.Tensor:
    """A linear layer's bias as (heads, width); zeros if it has none."""
    if layer.bias is None:
        return layer.weight.new_zeros(heads, width)
    return layer.bias.view(heads, width)


def accelerate(model: nn.Module) -> int:
    """Swap the faster modules into a ``transformers`` Grounding DINO, in place.

    Every multi-scale deformable attention of ``model`` (encoder and decoder) becomes a
    :class:`~grounded_sam.text.gdino_deformable.DeformableAttention`, every encoder deformable layer an
    :class:`~grounded_sam.text.gdino_deformable.EncoderDeformableLayer`, every image-text fusion
    attention a :class:`FoldedTextImageAttention` and every MLP of the Swin backbone a
    :class:`~grounded_sam.text.gdino_mlp.FusedMLP`. Each takes over the original's layers, so parameters
    and ``state_dict`` keys are untouched and the model still saves and loads as before; calling it
    twice changes nothing more.

    Returns:
        How many submodules were replaced (0 if ``model`` has none of the known parts).
    """
    from transformers.models.grounding_dino import modeling_grounding_dino as reference
    from transformers.models.swin import modeling_swin

    # attention first, so the new encoder layers take over the new attention
    replacements = [
        (reference.GroundingDinoMultiscaleDeformableAttention, DeformableAttention),
        (reference.GroundingDinoDeformableLayer, EncoderDeformableLayer),
        (reference.GroundingDinoBiMultiHeadAttention, FoldedTextImageAttention),
    ]
    if hasattr(modeling_swin, "SwinMLP"):  # transformers 5; 4.x splits it into two modules, left as they are
        replacements.append((modeling_swin.SwinMLP, FusedMLP))
    replaced = 0
    for original_type, build in replacements:
        for parent in list(model.modules()):
            for name, child in list(parent.named_children()):
                if isinstance(child, original_type):
                    setattr(parent, name, build(child))
                    replaced += 1
    logger.debug("swapped %d faster submodules into %s", replaced, type(model).__name__)
    return replaced
