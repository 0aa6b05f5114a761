"""Multi-scale deformable attention for ``transformers``' Grounding DINO, fast on a CPU.

``transformers`` samples each feature level with its own ``grid_sample``, then stacks, weights and sums
the samples: large intermediate tensors and copies. :func:`deformable_sample` does the same sampling as
one ``embedding_bag`` call, a gather fused with the weighted sum, on a value table with a zero border (no
per-corner bounds masks). :class:`DeformableAttention` and :class:`EncoderDeformableLayer` are drop-ins
for the model's modules that use it, built around the original layers (same parameters, same names);
:func:`grounded_sam.text.gdino_speed.accelerate` puts them into a model.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from grounded_sam.text.gdino_mlp import BAND_BYTES, feed_forward_in_bands

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
    neighbours = _neighbour_rows(low.view(bags, samples, 2), table.shape, starts, widths, (batch, queries))
    weight = weights.reshape(bags, samples)
    track = torch.is_grad_enabled() and (weights.requires_grad or locations.requires_grad)
    out = F.embedding_bag(
        neighbours.view(bags, -1),
        table.view(-1, depth),
        per_sample_weights=_corner_weights(upper, weight, stacked=track).view(bags, -1),
        mode="sum",
    )
    return out.view(batch, queries, heads * depth)


def _neighbour_rows(
    low: torch.Tensor,
    table_shape: torch.Size,
    starts: Sequence[int],
    widths: Sequence[int],
    batch_and_queries: tuple[int, int],
) -> torch.Tensor:
    """(bags, 4, samples) rows of the flattened (B * rows * heads, D) table holding the four bilinear
    neighbours (UL, UR, LL, LR) of each sample; `low` (bags, samples, 2) is its upper-left pixel (x, y)."""
    batch, queries = batch_and_queries
    _, rows_per_item, heads, _ = table_shape
    bags, samples, _ = low.shape
    levels = len(widths)
    points = samples // levels
    # Every tensor below is (bags, samples) or (bags, 4, samples): contiguous rows, so each op runs
    # vectorised (broadcasting over tiny trailing axes such as (..., 2) is several times slower).
    rows = table_shape[0] * rows_per_item * heads
    index_dtype = torch.int32 if rows < 2**31 else torch.int64
    # table rows are whole numbers, exact in float32 below 2**24: computed there, converted once
    exact = torch.float32 if rows < 2**24 else torch.float64
    device = low.device
    per_sample = functools.partial(_per_sample, levels=levels, points=points, device=device)
    padded_width = per_sample(widths, dtype=index_dtype)
    # table row of the upper-left neighbour (x, y) = low, in padded pixels (y + pad, x + pad):
    # (item * rows_per_item + start + (y + pad) * width + x + pad) * heads + head
    item = torch.arange(batch, dtype=exact, device=device) * (rows_per_item * heads)
    item_and_head = item[:, None, None] + torch.arange(heads, dtype=exact, device=device)
    level_part = [
        (start + _PAD_BEFORE * (width + 1)) * heads for start, width in zip(starts, widths, strict=True)
    ]
    first = item_and_head.expand(batch, queries, heads).reshape(bags, 1) + per_sample(level_part, dtype=exact)
    low = low.to(exact)
    first = torch.addcmul(first, low[..., 0], torch.tensor(heads, dtype=exact, device=device))
    first = torch.addcmul(first, low[..., 1], per_sample([w * heads for w in widths], dtype=exact))
    first = first.to(index_dtype)
    # (bags, 4, samples) tables; written in place, which is measurably faster than stacking
    neighbours = torch.empty(bags, 4, samples, dtype=index_dtype, device=device)
    for corner, step in enumerate((0, 1, padded_width, padded_width + 1)):  # UL, UR, LL, LR
        torch.add(first, step * heads, out=neighbours[:, corner])
    return neighbours


def _corner_weights(upper: torch.Tensor, weight: torch.Tensor, *, stacked: bool) -> torch.Tensor:
    """(bags, 4, samples) bilinear weight of each neighbour (UL, UR, LL, LR) times the sample's `weight`
    (bags, samples); `upper` (bags, samples, 2) is the weight of the right / lower neighbour. `stacked`:
    built out of place, so that gradients flow."""
    right, lower = upper[..., 0], upper[..., 1]
    top, bottom, left = (1 - lower) * weight, lower * weight, 1 - right
    pairs = ((top, left), (top, right), (bottom, left), (bottom, right))
    if stacked:
        return torch.stack([along_y * along_x for along_y, along_x in pairs], 1)
    corner_weights = weight.new_empty(weight.shape[0], 4, weight.shape[1])
    for corner, (along_y, along_x) in enumerate(pairs):
        torch.mul(along_y, along_x, out=corner_weights[:, corner])
    return corner_weights


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
    per_level: Sequence[float], *, levels: int, points: int, dtype: torch.dtype, device: torch.device
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


def sampling_locations(
    offsets: torch.Tensor, reference_points: torch.Tensor, level_shapes: Sequence[tuple[int, int]], heads: int
) -> torch.Tensor:
    """Deformable DETR's sample positions, with ``transformers``' arithmetic (so bit-identical).

    Args:
        offsets: (B, Q, heads * levels * points * 2) raw offsets, as the offset layer gives them.
        reference_points: (B, Q, levels, 2) centres (x, y) in [0, 1], offsets then count in pixels of
            each level; or (B, Q, levels, 4) boxes (cx, cy, w, h) in [0, 1], offsets then count in
            half box sizes divided by ``points``.
        level_shapes: (height, width) of each level.

    Returns:
        (B, Q, heads, levels, points, 2) positions (x, y) in [0, 1] of each level.
    """
    batch, queries, levels, coordinates = reference_points.shape
    points = offsets.shape[-1] // (heads * levels * 2)
    rows = offsets.reshape(batch * queries, heads, levels * points * 2)

    def per_column(per_level: torch.Tensor) -> torch.Tensor:  # (B, Q, levels, 2) → (B*Q, 1, columns)
        return per_level[:, :, :, None, :].expand(-1, -1, -1, points, -1).reshape(batch * queries, 1, -1)

    if coordinates == 2:
        sizes = torch.tensor([(w, h) for h, w in level_shapes], dtype=rows.dtype, device=rows.device)
        located = rows / sizes[:, None, :].expand(-1, points, -1).reshape(-1) + per_column(reference_points)
    elif coordinates == 4:
        spread = rows / points * per_column(reference_points[..., 2:]) * 0.5
        located = spread + per_column(reference_points[..., :2])
    else:
        raise ValueError(f"reference points must end in 2 or 4 coordinates, got {reference_points.shape}")
    return located.view(batch, queries, heads, levels, points, 2)


class DeformableAttention(nn.Module):
    """Drop-in for ``transformers``' ``GroundingDinoMultiscaleDeformableAttention`` on
    :func:`deformable_sample`, sharing the original's four linear layers (same names)."""

    def __init__(self, original: nn.Module) -> None:
        super().__init__()
        for name in ("sampling_offsets", "attention_weights", "value_proj", "output_proj"):
            setattr(self, name, getattr(original, name))
        self.d_model: int = original.d_model
        self.n_levels: int = original.n_levels
        self.n_heads: int = original.n_heads
        self.n_points: int = original.n_points
        self.train(original.training)

    def forward(
        self,
        hidden_states: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        encoder_hidden_states: torch.Tensor | None = None,
        encoder_attention_mask: torch.Tensor | None = None,
        position_embeddings: torch.Tensor | None = None,
        reference_points: torch.Tensor | None = None,
        spatial_shapes: torch.Tensor | None = None,
        spatial_shapes_list: Sequence[tuple[int, int]] | None = None,
        level_start_index: torch.Tensor | None = None,
        output_attentions: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Queries (B, Q, C) attend to ``encoder_hidden_states`` (B, S, C), masked where
        ``attention_mask`` (B, S) is False → ((B, Q, C), weights (B, Q, heads, levels, points))."""
        if position_embeddings is not None:
            hidden_states = hidden_states + position_embeddings
        batch, queries, _ = hidden_states.shape
        heads, levels, points = self.n_heads, self.n_levels, self.n_points
        if spatial_shapes_list is None:
            spatial_shapes_list = spatial_shapes.tolist()
        shapes = [(int(h), int(w)) for h, w in spatial_shapes_list]
        value = self.value_proj(encoder_hidden_states)
        if attention_mask is not None:
            value = value.masked_fill(~attention_mask[..., None], 0.0)
        value = value.view(batch, value.shape[1], heads, self.d_model // heads)
        weights = self.attention_weights(hidden_states).view(batch, queries, heads, levels * points)
        weights = F.softmax(weights, -1).view(batch, queries, heads, levels, points)
        locations = sampling_locations(self.sampling_offsets(hidden_states), reference_points, shapes, heads)
        return self.output_proj(deformable_sample(value, shapes, locations, weights)), weights


class EncoderDeformableLayer(nn.Module):
    """Drop-in for ``transformers``' ``GroundingDinoDeformableLayer`` (deformable self-attention, then
    a feed-forward block) that, outside training and without gradients, runs the feed-forward block in
    bands of rows (see :mod:`grounded_sam.text.gdino_mlp`). Shares the original's layers.
    """

    def __init__(self, original: nn.Module, band_bytes: int = BAND_BYTES) -> None:
        super().__init__()
        for name in ("self_attn", "self_attn_layer_norm", "fc1", "fc2", "final_layer_norm", "activation_fn"):
            setattr(self, name, getattr(original, name))
        self.dropout: float = original.dropout
        self.activation_dropout: float = original.activation_dropout
        self.band_bytes = band_bytes
        self.train(original.training)

    def forward(
        self,
        hidden_states: torch.Tensor,
        attention_mask: torch.Tensor,
        position_embeddings: torch.Tensor | None = None,
        reference_points: torch.Tensor | None = None,
        spatial_shapes: torch.Tensor | None = None,
        spatial_shapes_list: Sequence[tuple[int, int]] | None = None,
        level_start_index: torch.Tensor | None = None,
        output_attentions: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Image tokens (B, S, C) → updated tokens (B, S, C) and the attention weights."""
        attended, weights = self.self_attn(
            hidden_states=hidden_states,
            attention_mask=attention_mask,
            encoder_hidden_states=hidden_states,
            encoder_attention_mask=attention_mask,
            position_embeddings=position_embeddings,
            reference_points=reference_points,
            spatial_shapes=spatial_shapes,
            spatial_shapes_list=spatial_shapes_list,
            level_start_index=level_start_index,
            output_attentions=output_attentions,
        )
        attended = F.dropout(attended, p=self.dropout, training=self.training)
        hidden_states = self.self_attn_layer_norm(hidden_states + attended)
        hidden_states = self.final_layer_norm(hidden_states + self.feed_forward(hidden_states))
        if self.training and not torch.isfinite(hidden_states).all():
            limit = torch.finfo(hidden_states.dtype).max - 1000
            hidden_states = torch.clamp(hidden_states, min=-limit, max=limit)
        return hidden_states, weights

    def feed_forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        """fc2(activation(fc1(x))) of (..., C) tokens, in bands of rows unless gradients are needed."""
        if self.training or torch.is_grad_enabled():
            inner = self.activation_fn(self.fc1(hidden_states))
            inner = F.dropout(inner, p=self.activation_dropout, training=self.training)
            return F.dropout(self.fc2(inner), p=self.dropout, training=self.training)
        return feed_forward_in_bands(hidden_states, self.fc1, self.activation_fn, self.fc2, self.band_bytes)
