"""Multi-head attention of SAM's two-way transformer, as in the paper: project, attend per head, project.

State-dict keys and shapes are those of ``segment_anything.modeling.transformer.Attention``. The faster
formulations (projections moved to the cheaper side, shared projections) are
:class:`grounded_sam.sam.fast.attention.FastAttention`, swapped in by ``grounded_sam.sam.fast.accelerate``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class Attention(nn.Module):
    """Multi-head attention whose inner width is ``embedding_dim // downsample_rate``.

    Queries (Bq, Lq, C) and keys/values (Bk, Lk, C) may differ in batch when one of them is 1 (it is
    broadcast). Output: (max(Bq, Bk), Lq, C).
    """

    def __init__(self, embedding_dim: int, num_heads: int, downsample_rate: int = 1) -> None:
        super().__init__()
        self.inner_dim = embedding_dim // downsample_rate
        if self.inner_dim % num_heads:
            raise ValueError(f"num_heads ({num_heads}) must divide the attention width ({self.inner_dim})")
        self.num_heads = num_heads
        self.head_dim = self.inner_dim // num_heads
        self.q_proj = nn.Linear(embedding_dim, self.inner_dim)
        self.k_proj = nn.Linear(embedding_dim, self.inner_dim)
        self.v_proj = nn.Linear(embedding_dim, self.inner_dim)
        self.out_proj = nn.Linear(self.inner_dim, embedding_dim)

    def forward(
        self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, residual: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Attention of q over (k, v), plus ``residual`` (broadcastable to the output) when given."""
        batch = q.shape[0] if k.shape[0] == 1 else k.shape[0]
        q, k, v = (x.expand(batch, -1, -1) for x in (q, k, v))
        heads = [
            self._split_heads(proj(x)) for proj, x in ((self.q_proj, q), (self.k_proj, k), (self.v_proj, v))
        ]
        out = self.out_proj(F.scaled_dot_product_attention(*heads).transpose(1, 2).flatten(2))
        return out if residual is None else out + residual

    def _split_heads(self, x: torch.Tensor) -> torch.Tensor:
        """(B, L, inner) → (B, heads, L, head_dim), a view."""
        return x.unflatten(-1, (self.num_heads, self.head_dim)).transpose(1, 2)
