"""SAM's two-way transformer in stages, for many prompts against one image.

:class:`FastTwoWayTransformer` is a drop-in for :class:`~grounded_sam.sam.modeling.transformer.
TwoWayTransformer` (same parameters, same results up to float rounding) that
:func:`grounded_sam.sam.fast.accelerate` swaps in. Whatever depends on the image alone (the first block's
image keys, values and queries) is computed once and broadcast, and per-prompt image tokens only appear
after the first image→token update, where they really differ.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from grounded_sam.sam.modeling.transformer import TwoWayAttentionBlock, TwoWayTransformer


class FastTwoWayAttentionBlock(TwoWayAttentionBlock):
    """:class:`TwoWayAttentionBlock` that takes its image side prepared once (:class:`ImageTokens`) and
    may update per-prompt image tokens in place."""

    def forward(
        self,
        queries: torch.Tensor,
        keys: torch.Tensor,
        query_pe: torch.Tensor,
        key_pe: torch.Tensor,
        overwrite_keys: bool = False,
        image: ImageTokens | None = None,
        projected_pe: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Queries (N, T, C), keys (1 or N, HW, C), PEs broadcastable to them → updated (queries, keys).

        ``overwrite_keys``: the caller no longer needs ``keys`` (and autograd is off), so the image→token
        update may be written into them. ``image``: the first block's ``keys`` are these shared image
        tokens, whose sum with the PE and projections were made beforehand. ``projected_pe``: a later
        block's per-prompt keys get ``key_pe`` through the cross-attentions' projections, as
        :attr:`SharedProjections.block_pe` holds it, instead of a sum with it per prompt.
        """
        queries = self.attend_tokens(queries, query_pe)
        q = queries + query_pe
        t2i = self.cross_attn_token_to_image
        if image is not None:
            keys_with_pe = image.keys_with_pe
            queries = self.norm2(t2i.attend_keys(q, *image.first_keys) + queries)
        elif projected_pe is not None:
            queries = self.norm2(t2i.attend_offset_keys(q, keys, key_pe, queries, projected_pe[0]))
        else:
            keys_with_pe = keys + key_pe  # shared by both cross-attentions
            queries = self.norm2(t2i(q, keys_with_pe, keys, residual=queries))
        queries = self.feed_forward(queries)
        q = queries + query_pe
        i2t = self.cross_attn_image_to_token
        shared = None if image is None else image.projections
        if shared is None and projected_pe is None:
            return queries, self.norm4(i2t(keys_with_pe, q, queries, residual=keys, in_place=overwrite_keys))
        rows = i2t.key_rows(q, queries)
        if shared is not None:
            scores = i2t.shared_query_scores(rows, shared.first_queries)
        else:
            scores = i2t.row_scores(rows, keys, offset=projected_pe[1])
        return queries, self.norm4(i2t.mix_rows(rows, scores, keys, in_place=overwrite_keys))


@dataclass(frozen=True)
class ImageTokens:
    """The transformer's image input as row-major tokens, made once per image embedding by
    :meth:`TwoWayTransformer.image_tokens` and shared by every batch of prompts decoded against it.

    Attributes:
        keys: (1 or N, L, C) image tokens; pe: (1, L, C) their positional encoding; keys_with_pe: the sum.
        first_keys: the first block's token→image keys and values (:meth:`FastAttention.project_keys`).
        projections: what many prompts' attentions share, projected once (None: not made, e.g. for few
            prompts, or image tokens with batch N).
    """

    keys: torch.Tensor
    pe: torch.Tensor
    keys_with_pe: torch.Tensor
    first_keys: tuple[torch.Tensor, torch.Tensor]
    projections: SharedProjections | None


@dataclass(frozen=True)
class SharedProjections:
    """Image-side inputs that every prompt's attentions share, through their projections
    (:meth:`FastAttention.project_shared`, (heads, head_dim, L) each). They cost about one model-wide
    projection each per image and spare each prompt a model-wide product or a sum over its (L, C) image
    tokens, so they pay from a few prompts on
    (:data:`~grounded_sam.sam.budgets.SHARED_PROJECTIONS_MIN_PROMPTS`).

    Attributes:
        first_queries: the image tokens plus PE as the first block's image→token queries.
        block_pe: for each block after the first, the PE as its token→image keys and image→token queries.
        final_pe: the PE as the final attention's keys.
    """

    first_queries: torch.Tensor
    block_pe: tuple[tuple[torch.Tensor, torch.Tensor], ...]
    final_pe: torch.Tensor


@dataclass(frozen=True)
class BlockOutputs:
    """The transformer's state after its blocks, before the final tokens→image attention.

    Attributes:
        queries: (N, T, C) prompt tokens after the blocks.
        prompt: (N, T, C) the input prompt tokens (also their positional encoding).
        keys: (1 or N, L, C) image tokens after the blocks (batch 1 when no block updated them).
        key_pe: (1, L, C) positional encoding of the image tokens.
        final_pe: ``key_pe`` through the final attention's key projection, when it was made
            (:attr:`SharedProjections.final_pe`).
    """

    queries: torch.Tensor
    prompt: torch.Tensor
    keys: torch.Tensor
    key_pe: torch.Tensor
    final_pe: torch.Tensor | None = None

    def take(self, index: torch.Tensor) -> BlockOutputs:
        """The prompts at ``index`` (a 1-D index tensor)."""
        keys = self.keys if self.keys.shape[0] == 1 else self.keys[index]
        return BlockOutputs(self.queries[index], self.prompt[index], keys, self.key_pe, self.final_pe)


class FastTwoWayTransformer(TwoWayTransformer):
    """:class:`TwoWayTransformer` in stages: the image side made once (:meth:`image_tokens`) serves any
    number of prompt batches (:meth:`attend_blocks`), and the final attention can finish only some tokens
    (:meth:`final_attention`). Its blocks are :class:`FastTwoWayAttentionBlock`.
    """

    def forward(
        self, image_embedding: torch.Tensor, image_pe: torch.Tensor, point_embedding: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Run the transformer.

        Args:
            image_embedding: (1 or N, C, h, w); batch 1 is shared by all N prompts without copies.
            image_pe: (1, C, h, w) positional encoding of the image cells.
            point_embedding: (N, T, C) prompt tokens; also used as their positional encoding.

        Returns:
            queries (N, T, C) and image tokens (N, h*w, C) (row-major cells).
        """
        state = self.run_blocks(image_embedding, image_pe, point_embedding)
        return self.final_attention(state), state.keys.expand(point_embedding.shape[0], -1, -1)

    def run_blocks(
        self, image_embedding: torch.Tensor, image_pe: torch.Tensor, point_embedding: torch.Tensor
    ) -> BlockOutputs:
        """The blocks of :meth:`forward` (same arguments), without the final attention."""
        return self.attend_blocks(self.image_tokens(image_embedding, image_pe), point_embedding)

    def image_tokens(
        self, image_embedding: torch.Tensor, image_pe: torch.Tensor, project: bool = False
    ) -> ImageTokens:
        """The image side of :meth:`run_blocks` (image embedding (1 or N, C, h, w), its positional encoding
        (1, C, h, w)), for :meth:`attend_blocks`: made once, it serves any number of prompt batches.
        ``project``: also make the :class:`SharedProjections` (with a batch-1 embedding), for many prompts.
        """
        if image_embedding.shape[1:] != image_pe.shape[1:] or image_pe.shape[0] != 1:
            raise ValueError(
                f"image_pe must be (1, C, h, w) matching image_embedding {tuple(image_embedding.shape)}, "
                f"got {tuple(image_pe.shape)}"
            )
        keys = image_embedding.flatten(2).transpose(1, 2).contiguous()
        pe = image_pe.flatten(2).transpose(1, 2).contiguous()
        keys_with_pe = keys + pe
        first_keys = self.layers[0].cross_attn_token_to_image.project_keys(keys_with_pe, keys)
        projections = self.shared_projections(keys_with_pe, pe) if project and keys.shape[0] == 1 else None
        return ImageTokens(keys, pe, keys_with_pe, first_keys, projections)

    def shared_projections(self, keys_with_pe: torch.Tensor, pe: torch.Tensor) -> SharedProjections:
        """:class:`SharedProjections` of batch-1 image tokens plus PE and of the PE, (1, L, C) each."""
        later = tuple(
            (
                layer.cross_attn_token_to_image.project_shared(pe, "key"),
                layer.cross_attn_image_to_token.project_shared(pe, "query"),
            )
            for layer in self.layers[1:]
        )
        return SharedProjections(
            self.layers[0].cross_attn_image_to_token.project_shared(keys_with_pe, "query"),
            later,
            self.final_attn_token_to_image.project_shared(pe, "key"),
        )

    def attend_blocks(self, image: ImageTokens, point_embedding: torch.Tensor) -> BlockOutputs:
        """:meth:`run_blocks` on image tokens made beforehand, e.g. once for many batches of prompts."""
        batch = point_embedding.shape[0]
        if image.keys.shape[0] not in (1, batch):
            raise ValueError(
                f"image_embedding batch must be 1 or the prompt batch {batch}, got {image.keys.shape[0]}"
            )
        keys, queries = image.keys, point_embedding
        # Image tokens made by a block belong to this loop: the next block may update them in place.
        overwrite = not torch.is_grad_enabled()
        projections = image.projections
        for i, layer in enumerate(self.layers):
            shared = image if i == 0 else None
            pe = projections.block_pe[i - 1] if projections is not None and i > 0 else None
            queries, keys = layer(queries, keys, point_embedding, image.pe, overwrite and i > 0, shared, pe)
        final_pe = None if projections is None else projections.final_pe
        return BlockOutputs(queries, point_embedding, keys, image.pe, final_pe)

    def final_attention(self, state: BlockOutputs, tokens: slice | list[int] = slice(None)) -> torch.Tensor:
        """The final tokens→image attention and norm of the ``tokens`` of ``state`` → (N, T', C).

        Tokens do not interact in this last step, so a caller that needs only some of them (e.g. the IoU
        token, to filter prompts) can skip the others.
        """
        queries = state.queries[:, tokens]
        q = queries + state.prompt[:, tokens]
        attention = self.final_attn_token_to_image
        if state.keys.shape[0] == q.shape[0] > 1:
            attended = attention.attend_offset_keys(q, state.keys, state.key_pe, queries, state.final_pe)
        else:
            attended = attention(q, state.keys + state.key_pe, state.keys, residual=queries)
        return self.norm_final_attn(attended)
