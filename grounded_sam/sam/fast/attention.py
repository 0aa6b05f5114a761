"""The attention of SAM's two-way transformer with its projections applied wherever they cost least.

:class:`FastAttention` is a drop-in for :class:`~grounded_sam.sam.modeling.attention.Attention` (same
parameters, same results up to float rounding) that :func:`grounded_sam.sam.fast.accelerate` swaps in.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from grounded_sam.sam.modeling.attention import Attention


class FastAttention(Attention):
    """:class:`Attention` computed in the cheapest of three exact formulations.

    Queries (Bq, Lq, C) and keys/values (Bk, Lk, C) may differ in batch when one of them is 1: the
    batch-1 side is projected once and broadcast. Output: (max(Bq, Bk), Lq, C).

    The result is the reference's multi-head attention, but the projections are applied on whichever
    side is cheaper (exact algebra, different rounding):

    * many queries, few keys (image → tokens): the value and output projections are merged per key and
      head, and the query projection is moved onto the keys, so no (Lq, inner) tensor is formed;
    * few queries, many keys (tokens → image): the key projection is moved onto the queries and the
      value projection applied after the weighted sum, so the Lk keys are never projected;
    * otherwise the usual projections and ``scaled_dot_product_attention``.

    Inputs that every prompt of an image shares (the image's tokens, their positional encoding) can be
    projected once (:meth:`project_shared`): a prompt's scores against them are then head_dim wide.
    """

    def forward(
        self,
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        residual: torch.Tensor | None = None,
        in_place: bool = False,
    ) -> torch.Tensor:
        """Attention of q over (k, v), plus ``residual`` (broadcastable to the output) when given.

        The residual is an argument so the image→token path can add it inside its last matrix product
        instead of in another pass over an (N, h*w, C) tensor. With ``in_place`` (no autograd) that path
        adds into ``residual`` itself when it has the output's shape, sparing a copy of it.
        """
        batch_q, length_q, dim = q.shape
        batch_k, length_k, _ = k.shape
        if batch_k == 1 < batch_q:
            # Every query attends to the same keys: fold the query batch into the sequence.
            out = self.forward(q.reshape(1, batch_q * length_q, dim), k, v).view(batch_q, length_q, dim)
            return out if residual is None else out + residual
        if length_q > length_k and self._merging_pays(length_k, dim):
            return self._attend_few_keys(q, k, v, residual, in_place)
        if batch_q == 1 < batch_k:
            q = q.expand(batch_k, -1, -1)
        if length_k > length_q and self._merging_pays(length_q, dim):
            out = self._attend_many_keys(q, k, v)
        else:
            out = self._attend_projected(q, k, v)
        return out if residual is None else out + residual

    def _merging_pays(self, short_length: int, dim: int) -> bool:
        """Multiply-adds per (query, key) pair: the usual path ≈ 2·inner·(1 + C/L), L being the shorter
        side (the longer side's projections are shared by its L partners); the merged paths 2·heads·C."""
        if torch.compiler.is_exporting():  # an ONNX export's path must not depend on the prompt count
            return False
        return self.num_heads * short_length * dim < self.inner_dim * (short_length + dim)

    def _per_head(self, linear: nn.Linear) -> torch.Tensor:
        """An input projection's weight as (heads, head_dim, C)."""
        return linear.weight.unflatten(0, (self.num_heads, self.head_dim))

    def project_keys(self, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Keys and values (B, Lk, C) projected and split into heads, (B, heads, Lk, head_dim) each, for
        :meth:`attend_keys`: an image's can be made once for many batches of queries."""
        return self._split_heads(self.k_proj(k)), self._split_heads(self.v_proj(v))

    def attend_keys(self, q: torch.Tensor, keys: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
        """Attention of queries (B, Lq, C) over keys and values from :meth:`project_keys` (batch B or 1)."""
        batch, length_q, dim = q.shape
        if keys.shape[0] == 1 < batch:
            folded = self.attend_keys(q.reshape(1, batch * length_q, dim), keys, values)
            return folded.view(batch, length_q, dim)
        out = F.scaled_dot_product_attention(self._split_heads(self.q_proj(q)), keys, values)
        return self.out_proj(out.transpose(1, 2).flatten(2))

    def _attend_projected(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """The textbook form, for equal batches."""
        return self.attend_keys(q, *self.project_keys(k, v))

    def _attend_many_keys(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """Equal batches B. q·(Wk k + bk) = (Wkᵀ q)·k + q·bk, and the softmax ignores the term constant
        over keys; the weights sum to one, so Wv and bv are applied after averaging the raw values.

        The scores are formed whole: with a few hundred wide queries this is faster on a CPU than
        ``scaled_dot_product_attention``'s blocked kernel (about 15 % per prompt against 4096 keys).
        """
        probs = (self.wide_queries(q) @ k.transpose(1, 2)).softmax(-1)
        return self.finish_wide(probs @ v, q.shape[1])

    def head_queries(self, q: torch.Tensor) -> torch.Tensor:
        """(B, Lq, C) queries projected and split into heads, over √head_dim → (B, heads, Lq, head_dim)."""
        return self._split_heads(self.q_proj(q)) * self.head_dim**-0.5

    def wide_queries(self, q: torch.Tensor, heads: torch.Tensor | None = None) -> torch.Tensor:
        """(B, Lq, C) queries → (B, heads·Lq, C): one model-width query per (head, token) that scores raw
        keys as the projected query scores projected keys, over √head_dim (``heads``: :meth:`head_queries`
        of ``q`` when the caller has them)."""
        batch, length_q, dim = q.shape
        heads = self.head_queries(q) if heads is None else heads
        wide = torch.einsum("bhqd,hdc->bhqc", heads, self._per_head(self.k_proj))
        return wide.reshape(batch, self.num_heads * length_q, dim)

    def finish_wide(self, mixed: torch.Tensor, length_q: int) -> torch.Tensor:
        """Softmax-weighted raw values (B, heads·Lq, C) of :meth:`wide_queries` → the output (B, Lq, C)."""
        batch, _, dim = mixed.shape
        mixed = mixed.view(batch, self.num_heads, length_q, dim)
        out = torch.einsum("bhqc,hdc->bqhd", mixed, self._per_head(self.v_proj)) + self.v_proj.bias.view(
            self.num_heads, self.head_dim
        )
        return self.out_proj(out.flatten(2))

    def attend_offset_keys(
        self,
        q: torch.Tensor,
        keys: torch.Tensor,
        key_offset: torch.Tensor,
        residual: torch.Tensor,
        projected_offset: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``forward(q, keys + key_offset, keys, residual)`` without forming ``keys + key_offset``.

        For few queries against many per-prompt keys (the token→image attentions after the first block):
        q (B, Lq, C), keys (B, Lk, C), key_offset (1, Lk, C) shared by the batch (their positional
        encoding). The offset's scores come from one product for the whole batch, which costs less than
        adding it to every prompt's keys; with ``projected_offset``, the offset as :meth:`project_shared`
        made it (heads, head_dim, Lk), that product is head_dim wide instead of model wide.
        """
        batch, length_q, dim = q.shape
        heads = self.head_queries(q)
        wide = self.wide_queries(q, heads)
        if projected_offset is None:
            scores = (wide.reshape(-1, dim) @ key_offset[0].T).view(batch, wide.shape[1], -1)
        else:
            scores = self.shared_key_scores(heads, projected_offset)
        # bmm then add: on a CPU about 15 % faster than baddbmm with the scores as its input.
        probs = torch.bmm(wide, keys.transpose(1, 2)).add_(scores).softmax(-1)
        return self.finish_wide(probs @ keys, length_q) + residual

    def key_rows(self, k: torch.Tensor, v: torch.Tensor) -> KeyRows:
        """Keys and values (B, Lk, C) as one row per (head, key): its query-space vector Wq,ₕᵀ kₕ (and bias
        bq,ₕ·kₕ) for the scores, and its output-space value Wo,ₕ (Wv,ₕ v + bv,ₕ) for the result. The output
        bias is spread over the heads' rows (each head's weights sum to one)."""
        batch, length_k, dim = k.shape
        rows = self.num_heads * length_k
        keys = self._split_heads(self.k_proj(k)) * self.head_dim**-0.5  # (B, heads, Lk, head_dim)
        key_rows = torch.einsum("bhkd,hdc->bhkc", keys, self._per_head(self.q_proj)).reshape(batch, rows, dim)
        key_bias = (keys @ self.q_proj.bias.view(self.num_heads, self.head_dim, 1)).view(batch, rows, 1)
        out_weight = self.out_proj.weight.unflatten(1, (self.num_heads, self.head_dim))  # (C, heads, hd)
        values = self._split_heads(self.v_proj(v))
        value_rows = torch.einsum("bhkd,chd->bhkc", values, out_weight) + self.out_proj.bias / self.num_heads
        return KeyRows(key_rows, key_bias, value_rows.reshape(batch, rows, dim), length_k, keys)

    def project_shared(self, x: torch.Tensor, side: Literal["query", "key"]) -> torch.Tensor:
        """Queries or keys (1, L, C) shared by every prompt (an image's tokens, or a positional encoding
        added to per-prompt ones) through that side's projection → (heads, head_dim, L), made once for
        :meth:`shared_query_scores` or :meth:`shared_key_scores`."""
        if x.shape[0] != 1:
            raise ValueError(f"shared {side}s have batch 1, got {tuple(x.shape)}")
        linear = self.q_proj if side == "query" else self.k_proj
        return linear(x)[0].T.unflatten(0, (self.num_heads, self.head_dim)).contiguous()

    def shared_query_scores(self, rows: KeyRows, queries: torch.Tensor) -> torch.Tensor:
        """:meth:`row_scores` of queries projected by :meth:`project_shared` → (B, heads·Lk, Lq).

        With the queries' projection made once, each prompt's scores cost a head_dim-wide product instead
        of a model-wide one (16 against 256 multiply-adds per score in ViT SAM's decoder).
        """
        batch, count, _ = rows.keys.shape
        # einsum makes one product per head over all prompts, where matmul would copy the queries per prompt.
        return torch.einsum("bhkd,hdq->bhkq", rows.projected, queries).reshape(batch, count, -1)

    def shared_key_scores(self, head_queries: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
        """Scores (B, heads·Lq, Lk) of :meth:`head_queries` (B, heads, Lq, head_dim) against keys projected
        by :meth:`project_shared` (heads, head_dim, Lk), in the layout of :meth:`wide_queries`' scores."""
        return torch.einsum("bhqd,hdk->bhqk", head_queries, keys).flatten(1, 2)

    def row_scores(self, rows: KeyRows, q: torch.Tensor, offset: torch.Tensor | None = None) -> torch.Tensor:
        """Scores (B, heads·Lk, Lq) of raw queries q (B or 1, Lq, C) against :meth:`key_rows`.

        ``offset``: the scores are those of ``q`` plus a shared (1, Lq, C) offset (e.g. its positional
        encoding), given as :meth:`project_shared` made it; the sum is never formed.
        """
        batch, count, dim = rows.keys.shape
        if offset is not None:
            # bmm then add: on a CPU about 15 % faster than baddbmm with the offset as its input.
            return torch.bmm(rows.keys, q.transpose(1, 2)).add_(self.shared_query_scores(rows, offset))
        if q.shape[0] == 1:
            # Shared queries: one matrix product for all B, no broadcast copy of q.
            return (rows.keys.view(batch * count, dim) @ q[0].T).view(batch, count, q.shape[1]) + rows.bias
        return torch.baddbmm(rows.bias, rows.keys, q.transpose(1, 2))

    def mix_rows(
        self, rows: KeyRows, scores: torch.Tensor, residual: torch.Tensor | None, in_place: bool = False
    ) -> torch.Tensor:
        """Softmax over each head's keys of :meth:`row_scores`, applied to the value rows → (B, Lq, C),
        plus ``residual``; ``in_place`` adds into ``residual`` itself (B, Lq, C) instead of a copy."""
        batch, count, length_q = scores.shape
        # Softmax over the Lk keys with the long query axis innermost (much faster than a last dim of Lk).
        probs = scores.view(batch, self.num_heads, rows.length, length_q).softmax(dim=2)
        probs = probs.view(batch, count, length_q).transpose(1, 2)
        if residual is None:
            return probs @ rows.values
        in_place = in_place and residual.shape == (batch, length_q, rows.values.shape[-1])
        if in_place and not torch.is_autocast_enabled(residual.device.type):  # autocast can't write in place
            return residual.baddbmm_(probs, rows.values)
        return torch.baddbmm(residual, probs, rows.values)

    def _attend_few_keys(
        self,
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        residual: torch.Tensor | None,
        in_place: bool = False,
    ) -> torch.Tensor:
        """Keys/values batch B, queries batch B or 1, through :meth:`key_rows`."""
        rows = self.key_rows(k, v)
        return self.mix_rows(rows, self.row_scores(rows, q), residual, in_place)


@dataclass(frozen=True)
class KeyRows:
    """Keys and values of an attention prepared by :meth:`Attention.key_rows`.

    Attributes:
        keys: (B, heads·Lk, C) query-space key rows; bias: (B, heads·Lk, 1) their score offsets.
        values: (B, heads·Lk, C) output-space value rows; length: Lk, the keys per head.
        projected: (B, heads, Lk, head_dim) the projected keys over √head_dim, for
            :meth:`Attention.shared_query_scores`.
    """

    keys: torch.Tensor
    bias: torch.Tensor
    values: torch.Tensor
    length: int
    projected: torch.Tensor
