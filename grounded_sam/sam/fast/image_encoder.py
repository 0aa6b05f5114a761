"""Memory-bounded drop-ins for the ViT image encoder's attention and blocks.

:class:`FastRelPosAttention` projects q, k and v one at a time, pads windows with the projected bias
instead of projecting zero tokens, and builds the decomposed relative-position bias for a few windows, or
a few heads and query rows, at a time into one reused buffer, so the full (heads, tokens, tokens) bias of a
global block never exists. :class:`FastEncoderBlock` runs its MLP in bands of rows. Budgets are in
:mod:`grounded_sam.sam.budgets`.
"""

from __future__ import annotations

import itertools
import math

import torch
import torch.nn.functional as F

from grounded_sam.sam import budgets
from grounded_sam.sam.modeling.image_encoder import (
    EncoderBlock,
    RelPosAttention,
    relative_position_table,
    window_partition,
    window_unpartition,
)


class FastRelPosAttention(RelPosAttention):
    """:class:`RelPosAttention` with the projections and the relative-position bias computed in pieces."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, H, W, C) -> (B, H, W, C); tokens attend within `window_size` windows, or globally if 0."""
        h, w, dim = x.shape[1:]
        projections = []
        # q, k and v are projected one at a time: each (B, H, W, C) result of ViT-B then stays below glibc's
        # 32 MiB mmap threshold, so its memory is recycled instead of page-faulted in anew at every block.
        for index in range(3):
            projected, part_bias = self.project_part(x, index)
            if self.window_size > 0:
                # The plain network pads the normalised tokens with zeros before projecting them, so padding
                # tokens project to the bias: projecting only the real tokens and padding with the bias
                # gives the same windows for ~16 % fewer FLOPs at ViT-B/1024.
                projected = window_partition(projected, self.window_size, fill=part_bias)
            projections.append(projected)
        n, gh, gw, _ = projections[0].shape
        # Three (N, heads, gh*gw, hd) views; SDPA takes the strides as they are.
        q, k, v = (p.view(n, gh * gw, self.num_heads, -1).transpose(1, 2) for p in projections)
        if self.use_rel_pos:
            out = self._attend_with_rel_pos(q, k, v, gh, gw)
        else:
            out = F.scaled_dot_product_attention(q, k, v).transpose(1, 2)
        out = out.reshape(n, gh, gw, dim)
        if self.window_size > 0:
            out = window_unpartition(out, (h, w))
        return self.proj(out)

    def project_part(self, x: torch.Tensor, index: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(B, H, W, C) tokens through the q (``index`` 0), k (1) or v (2) rows of ``qkv`` → (B, H, W, C),
        and those rows' bias (C,) or None. (The int8 encoder answers this from its own layers.)"""
        dim = x.shape[-1]
        part = slice(index * dim, (index + 1) * dim)
        bias = None if self.qkv.bias is None else self.qkv.bias[part]
        return F.linear(x, self.qkv.weight[part], bias), bias

    def _attend_with_rel_pos(
        self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, h: int, w: int
    ) -> torch.Tensor:
        """Attention with bias[i, j] = q_i . Rh[row_i - row_j] + q_i . Rw[col_i - col_j] (q unscaled).

        q, k, v: (N, heads, h*w, hd) -> (N, h*w, heads, hd). The additive bias is materialised only for
        a chunk of grids or of query rows at a time.
        """
        n, heads, tokens, head_dim = q.shape
        grid_q = q.view(n, heads, h, w, head_dim)
        rel_rows = relative_position_table(self.rel_pos_h, h)  # (h, h, hd)
        rel_cols = relative_position_table(self.rel_pos_w, w)  # (w, w, hd)
        bias_rows = torch.einsum("nayxc,ykc->nayxk", grid_q, rel_rows)[..., None]  # (N, heads, h, w, h, 1)
        bias_cols = torch.einsum("nayxc,xkc->nayxk", grid_q, rel_cols)[..., None, :]  # (N, heads, h, w, 1, w)

        chunks = _bias_chunks(n, heads, h, w)
        # One buffer reused by every chunk (the first is the largest); the bias is added into it explicitly
        # because einsum may return permuted layouts while SDPA wants (N, heads, queries, keys) rows.
        # When training, the bias gets a fresh tensor per chunk (out= writes are not differentiable), and so
        # it does in an export (a graph has no buffers to write into).
        fresh = (torch.is_grad_enabled() and q.requires_grad) or torch.compiler.is_exporting()
        buffer = None if fresh else q.new_empty(math.prod(_length(s) for s in chunks[0]) * w * tokens)
        out = q.new_empty(n, tokens, heads, v.shape[-1])
        for grids, hs, rs in chunks:
            size = (_length(grids), _length(hs), _length(rs))
            if buffer is None:
                mask = bias_rows[grids, hs, rs] + bias_cols[grids, hs, rs]
            else:
                mask = buffer[: math.prod(size) * w * tokens].view(*size, w, h, w)
                torch.add(bias_rows[grids, hs, rs], bias_cols[grids, hs, rs], out=mask)
            span = slice(rs.start * w, rs.stop * w)
            mask = mask.reshape(size[0], size[1], size[2] * w, tokens)
            chunk = F.scaled_dot_product_attention(
                q[grids, hs, span], k[grids, hs], v[grids, hs], attn_mask=mask
            )
            out[grids, span, hs] = chunk.transpose(1, 2)
        return out


class FastEncoderBlock(EncoderBlock):
    """:class:`EncoderBlock` with its MLP run in bands of rows."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, H, W, C) -> (B, H, W, C)."""
        x = x + self.attn(self.norm1(x))
        rows = max(1, budgets.MLP_CHUNK_TOKENS // (x.shape[0] * x.shape[2]))
        if rows >= x.shape[1]:
            return x + self.mlp(self.norm2(x))
        # Bands of rows keep the (tokens, 4C) hidden activation under the mmap threshold.
        return x + torch.cat([self.mlp(self.norm2(band)) for band in x.split(rows, dim=1)], dim=1)


def _bias_chunks(n: int, heads: int, h: int, w: int) -> list[tuple[slice, slice, slice]]:
    """Split the bias of N grids of h x w tokens into chunks of (grids, heads, query rows) slices.

    Small grids (windows) are grouped whole. A large grid is split into balanced bands of query rows, each
    with at least `MIN_CHUNK_QUERIES` queries when the grid has that many, and then into balanced groups of
    heads when a band of all heads would still exceed `MAX_BIAS_ELEMENTS`.
    """
    tokens = h * w
    if heads * tokens * tokens <= budgets.MAX_BIAS_ELEMENTS:
        items = max(1, budgets.MAX_BIAS_ELEMENTS // (heads * tokens * tokens))
        items, group, rows = _ceil_div(n, _ceil_div(n, items)), heads, h
    else:
        items, min_rows = 1, min(h, _ceil_div(budgets.MIN_CHUNK_QUERIES, w))
        band_elements = min_rows * w * tokens  # one head
        if heads * band_elements <= budgets.MAX_BIAS_ELEMENTS:
            group, rows = heads, budgets.MAX_BIAS_ELEMENTS // (heads * w * tokens)
        else:
            group, rows = max(1, budgets.MAX_BIAS_ELEMENTS // band_elements), min_rows
            group = _ceil_div(heads, _ceil_div(heads, group))
        rows = _ceil_div(h, max(1, h // rows))  # fewer, equal bands: none shorter than `rows`
    return [
        (slice(i, min(n, i + items)), slice(a, min(heads, a + group)), slice(r, min(h, r + rows)))
        for i, a, r in itertools.product(range(0, n, items), range(0, heads, group), range(0, h, rows))
    ]


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def _length(s: slice) -> int:
    return s.stop - s.start
