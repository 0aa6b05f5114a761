"""Faster CPU paths for ``transformers``' Grounding DINO, swapped into one model instance.

``transformers`` runs multi-scale deformable attention in pure PyTorch through one ``grid_sample`` per
feature level, then stacks, weights and sums the samples: large intermediate tensors and copies. On a
CPU this module's :class:`DeformableSampler` does the same sampling as one ``embedding_bag`` call, a
gather fused with the weighted sum, on a value table with a zero border (no per-corner bounds masks).

:func:`accelerate` puts these replacements into a loaded ``GroundingDinoForObjectDetection``; the
parameters, their names and the outputs (up to float rounding, ~1e-6) stay the same. It changes only the
instance it is given, never the ``transformers`` classes.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F

logger = logging.getLogger(__name__)

# Zero rows before / after each axis of every level: a sample clamped to [-1, size] then has both of its
# bilinear neighbours inside the padded map, and the ones outside the real map read zeros.
_PAD_BEFORE, _PAD_AFTER = 1, 2


def deformable_sample(
    value: torch.Tensor,
    level_shapes: Sequence[tuple[int, int]],
    locations: torch.Tensor,
    weights: torch.Tensor,
) -> torch.Tensor:
    """Multi-scale deformable sampling: bilinear samples of ``value``, summed with ``weights``.

    Equals ``grid_sample(..., mode="bilinear", padding_mode="zeros", align_corners=False)`` per level
    followed by the weighted sum over levels and points, as in Deformable DETR.

    Args:
        value: (B, S, heads, D) per-head features of all levels, flattened row-major per level.
        level_shapes: (height, width) of each level; their areas add up to S.
        locations: (B, Q, heads, levels, points, 2) sample positions as (x, y) in [0, 1] of each level
            (0 and 1 are the outer edges of the border pixels); outside reads zeros.
        weights: (B, Q, heads, levels, points) weight of each sample.

    Returns:
        (B, Q, heads * D) weighted sums, heads major.
    """
    batch, length, heads, depth = value.shape
    _, queries, _, levels, points, _ = locations.shape
    if len(level_shapes) != levels or sum(h * w for h, w in level_shapes) != length:
        raise ValueError(
            f"level shapes {list(level_shapes)} do not match {levels} levels and {length} value positions"
        )
    table, starts, widths = _padded_table(value, level_shapes)
    bags, samples = batch * queries * heads, levels * points
    pixel = _pixel_positions(locations.reshape(bags, samples * 2), level_shapes, points)
    low = pixel.floor()
    upper = (pixel - low).view(bags, samples, 2)  # weight of the right / lower neighbour
    low = low.view(bags, samples, 2)

    # Every tensor below is (bags, samples) or (bags, 4, samples): contiguous rows, so each op runs
    # vectorised (broadcasting over tiny trailing axes such as (..., 2) is several times slower).
    rows = table.shape[0] * table.shape[1] * heads
    index_dtype = torch.int32 if rows < 2**31 else torch.int64
    device = value.device
    per_sample = functools.partial(
        _per_sample, levels=levels, points=points, dtype=index_dtype, device=device
    )
    padded_width = per_sample(widths)
    cell = low.to(index_dtype)
    # row of the upper-left neighbour within its batch item: start + (y + 1) * width + (x + 1)
    position = torch.addcmul(
        cell[..., 0] + per_sample(starts) + padded_width + _PAD_BEFORE, cell[..., 1], padded_width
    )
    head = torch.arange(heads, dtype=index_dtype, device=device)
    item = torch.arange(batch, dtype=index_dtype, device=device) * (table.shape[1] * heads)
    first = position * heads + (item[:, None, None] + head).expand(batch, queries, heads).reshape(bags, 1)

    neighbours = torch.empty(bags, 4, samples, dtype=index_dtype, device=device)
    for corner, step in enumerate((0, 1, padded_width, padded_width + 1)):  # UL, UR, LL, LR
        torch.add(first, step * heads, out=neighbours[:, corner])
    right, lower = upper[..., 0], upper[..., 1]
    weight = weights.reshape(bags, samples)
    top, bottom, left = (1 - lower) * weight, lower * weight, 1 - right
    corner_weights = torch.empty(bags, 4, samples, dtype=weight.dtype, device=device)
    for corner, (along_y, along_x) in enumerate(((top, left), (top, right), (bottom, left), (bottom, right))):
        torch.mul(along_y, along_x, out=corner_weights[:, corner])

    out = F.embedding_bag(
        neighbours.view(bags, -1),
        table.view(-1, depth),
        per_sample_weights=corner_weights.view(bags, -1),
        mode="sum",
    )
    return out.view(batch, queries, heads * depth)


def _pixel_positions(
    locations: torch.Tensor, level_shapes: Sequence[tuple[int, int]], points: int
) -> torch.Tensor:
    """(bags, levels * points * 2) positions in [0, 1] → pixels of each level, clamped to [-1, size].

    Uses grid_sample's own arithmetic (grid = 2 * location - 1, unnormalised with align_corners=False),
    so the pixel positions, hence the bilinear weights, are bit-identical to transformers' route.
    """
    sizes = torch.tensor([(w, h) for h, w in level_shapes], dtype=locations.dtype, device=locations.device)
    sizes = sizes[:, None, :].expand(-1, points, 2).reshape(-1)  # one per column: (w, h) of its level
    pixel = locations.mul(2).sub_(1).add_(1).mul_(sizes / 2).sub_(0.5)
    return torch.clamp(pixel, min=torch.tensor(-1.0, dtype=pixel.dtype, device=pixel.device), max=sizes)


def _per_sample(
    per_level: Sequence[int], *, levels: int, points: int, dtype: torch.dtype, device: torch.device
) -> torch.Tensor:
    """(levels * points,) the value of each sample's level."""
    return torch.tensor(per_level, dtype=dtype, device=device)[:, None].expand(levels, points).reshape(-1)


def _padded_table(
    value: torch.Tensor, level_shapes: Sequence[tuple[int, int]]
) -> tuple[torch.Tensor, list[int], list[int]]:
    """(B, rows, heads, D) levels with a zero border, each level's first row and padded width."""
    batch, _, heads, depth = value.shape
    padded, starts, widths = [], [], []
    read = written = 0
    for height, width in level_shapes:
        level = value[:, read : read + height * width].reshape(batch, height, width, heads * depth)
        level = F.pad(level, (0, 0, _PAD_BEFORE, _PAD_AFTER, _PAD_BEFORE, _PAD_AFTER))
        padded.append(level.reshape(batch, -1, heads, depth))
        starts.append(written)
        widths.append(width + _PAD_BEFORE + _PAD_AFTER)
        read += height * width
        written += padded[-1].shape[1]
    return torch.cat(padded, 1), starts, widths


class DeformableSampler(nn.Module):
    """Drop-in for ``transformers``' ``MultiScaleDeformableAttention`` (no parameters) on
    :func:`deformable_sample`; same call signature, (B, Q, heads * D) output."""

    def forward(
        self,
        value: torch.Tensor,
        value_spatial_shapes: torch.Tensor,
        value_spatial_shapes_list: Sequence[tuple[int, int]],
        level_start_index: torch.Tensor,
        sampling_locations: torch.Tensor,
        attention_weights: torch.Tensor,
        im2col_step: int = 64,
    ) -> torch.Tensor:
        shapes = [(int(h), int(w)) for h, w in value_spatial_shapes_list]
        return deformable_sample(value, shapes, sampling_locations, attention_weights)


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
    """Swap the faster paths of this module into a ``transformers`` Grounding DINO, in place.

    Every multi-scale deformable attention of ``model`` (encoder and decoder) gets a
    :class:`DeformableSampler`, every image-text fusion layer a :class:`FoldedTextImageAttention`.
    Parameters and ``state_dict`` keys are untouched, so the model still saves and loads as before;
    calling it twice changes nothing more.

    Returns:
        How many submodules were replaced (0 if ``model`` has none of the known parts).
    """
    from transformers.models.grounding_dino import modeling_grounding_dino as reference

    replaced = 0
    for module in model.modules():
        if isinstance(module, reference.GroundingDinoMultiscaleDeformableAttention) and not isinstance(
            module.attn, DeformableSampler
        ):
            module.attn = DeformableSampler()
            replaced += 1
        elif isinstance(module, reference.GroundingDinoFusionLayer) and not isinstance(
            module.attn, FoldedTextImageAttention
        ):
            module.attn = FoldedTextImageAttention(module.attn)
            replaced += 1
    logger.debug("swapped %d faster submodules into %s", replaced, type(model).__name__)
    return replaced
