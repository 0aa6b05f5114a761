"""SAM's two-way transformer: prompt tokens and image tokens attend to each other.

State-dict keys and shapes are those of ``segment_anything.modeling.TwoWayTransformer``. The image side
may have batch 1 while the prompts have batch N (it is broadcast). The staged form that computes the image
side once for many prompt batches is :mod:`grounded_sam.sam.fast.transformer`.
"""

from __future__ import annotations

import torch
from torch import nn

from grounded_sam.sam.modeling.attention import Attention
from grounded_sam.sam.modeling.common import FeedForward


class TwoWayAttentionBlock(nn.Module):
    """Token self-attention, tokens→image attention, token MLP, image→tokens attention; post-norm."""

    def __init__(
        self,
        embedding_dim: int,
        num_heads: int,
        mlp_dim: int,
        attention_downsample_rate: int = 2,
        skip_first_layer_pe: bool = False,
    ) -> None:
        super().__init__()
        self.self_attn = Attention(embedding_dim, num_heads)
        self.norm1 = nn.LayerNorm(embedding_dim)
        self.cross_attn_token_to_image = Attention(embedding_dim, num_heads, attention_downsample_rate)
        self.norm2 = nn.LayerNorm(embedding_dim)
        self.mlp = FeedForward(embedding_dim, mlp_dim, act=nn.ReLU)
        self.norm3 = nn.LayerNorm(embedding_dim)
        self.norm4 = nn.LayerNorm(embedding_dim)
        self.cross_attn_image_to_token = Attention(embedding_dim, num_heads, attention_downsample_rate)
        self.skip_first_layer_pe = skip_first_layer_pe

    def forward(
        self, queries: torch.Tensor, keys: torch.Tensor, query_pe: torch.Tensor, key_pe: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Queries (N, T, C), keys (1 or N, HW, C), PEs broadcastable to them → updated (queries, keys)."""
        queries = self.attend_tokens(queries, query_pe)
        keys_with_pe = keys + key_pe
        attended = self.cross_attn_token_to_image(queries + query_pe, keys_with_pe, keys, residual=queries)
        queries = self.feed_forward(self.norm2(attended))
        keys = self.cross_attn_image_to_token(keys_with_pe, queries + query_pe, queries, residual=keys)
        return queries, self.norm4(keys)

    def attend_tokens(self, queries: torch.Tensor, query_pe: torch.Tensor) -> torch.Tensor:
        """The tokens' self-attention step (N, T, C) → (N, T, C)."""
        if self.skip_first_layer_pe:
            # The first block replaces the tokens by their self-attention (no residual, no PE), as trained.
            return self.norm1(self.self_attn(queries, queries, queries))
        q = queries + query_pe
        return self.norm1(queries + self.self_attn(q, q, queries))

    def feed_forward(self, queries: torch.Tensor) -> torch.Tensor:
        """The tokens' MLP step (N, T, C) → (N, T, C)."""
        return self.norm3(queries + self.mlp(queries))


class TwoWayTransformer(nn.Module):
    """A stack of two-way blocks and a final tokens→image attention.

    Example::

        transformer = TwoWayTransformer(depth=2, embedding_dim=256, num_heads=8, mlp_dim=2048)
        tokens, image = transformer(torch.randn(1, 256, 64, 64), torch.randn(1, 256, 64, 64),
                                    torch.randn(20, 7, 256))   # → (20, 7, 256), (20, 4096, 256)
    """

    def __init__(
        self,
        depth: int = 2,
        embedding_dim: int = 256,
        num_heads: int = 8,
        mlp_dim: int = 2048,
        attention_downsample_rate: int = 2,
    ) -> None:
        super().__init__()
        if depth < 1:
            raise ValueError(f"depth must be at least 1, got {depth}")
        self.depth = depth
        self.embedding_dim = embedding_dim
        self.num_heads = num_heads
        self.mlp_dim = mlp_dim
        self.layers = nn.ModuleList(
            TwoWayAttentionBlock(embedding_dim, num_heads, mlp_dim, attention_downsample_rate, i == 0)
            for i in range(depth)
        )
        self.final_attn_token_to_image = Attention(embedding_dim, num_heads, attention_downsample_rate)
        self.norm_final_attn = nn.LayerNorm(embedding_dim)

    def forward(
        self, image_embedding: torch.Tensor, image_pe: torch.Tensor, point_embedding: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Run the transformer.

        Args:
            image_embedding: (1 or N, C, h, w); batch 1 is shared by all N prompts.
            image_pe: (1, C, h, w) positional encoding of the image cells.
            point_embedding: (N, T, C) prompt tokens; also used as their positional encoding.

        Returns:
            queries (N, T, C) and image tokens (N, h*w, C) (row-major cells).
        """
        check_inputs(image_embedding, image_pe, point_embedding)
        batch = point_embedding.shape[0]
        keys = image_embedding.flatten(2).transpose(1, 2)
        key_pe = image_pe.flatten(2).transpose(1, 2)
        queries = point_embedding
        for layer in self.layers:
            queries, keys = layer(queries, keys, point_embedding, key_pe)
        attended = self.final_attn_token_to_image(
            queries + point_embedding, keys + key_pe, keys, residual=queries
        )
        return self.norm_final_attn(attended), keys.expand(batch, -1, -1)


def check_inputs(
    image_embedding: torch.Tensor, image_pe: torch.Tensor, point_embedding: torch.Tensor
) -> None:
    """ValueError unless the image embedding has batch 1 or N and ``image_pe`` is (1, C, h, w) like it."""
    batch = point_embedding.shape[0]
    if image_embedding.shape[0] not in (1, batch):
        raise ValueError(
            f"image_embedding batch must be 1 or the prompt batch {batch}, got {image_embedding.shape[0]}"
        )
    if image_embedding.shape[1:] != image_pe.shape[1:] or image_pe.shape[0] != 1:
        raise ValueError(
            f"image_pe must be (1, C, h, w) matching image_embedding {tuple(image_embedding.shape)}, "
            f"got {tuple(image_pe.shape)}"
        )
