"""Predicted IoUs of many prompts without materialising their image tokens: the gate of segment everything.

Segment everything decodes about a thousand prompts per image and, with the usual thresholds, keeps the
masks of few of them. What decides is the IoU head, which reads only the IoU token after the final
attention. The decoder's cost is its image side: after the first image→token attention every prompt has
its own (h·w, C) image tokens, and the plain path streams several such tensors per prompt through memory.

:func:`gate_ious` computes the same IoUs (same algebra as
:class:`~grounded_sam.sam.fast.attention.FastAttention`, different rounding) walking the image tokens
in chunks of rows, so each chunk is produced and consumed while it is still in cache:

* the image→token attentions and their LayerNorms act on each image token alone, so they run chunk by
  chunk;
* the token→image attentions need every image token: they are accumulated over the chunks with a running
  softmax (maximum, normaliser and weighted sum), as in flash attention;
* the first block's image tokens are kept (in chunks) for the second block; the second block's are never
  stored: the final attention of the IoU token consumes them chunk by chunk.

Only SAM's two-block :class:`~grounded_sam.sam.modeling.transformer.TwoWayTransformer` with one shared image
embedding is covered (:func:`supports_gate`); masks are always decoded by the plain path.
"""

from __future__ import annotations

import torch

from grounded_sam.sam import budgets
from grounded_sam.sam.fast.attention import FastAttention
from grounded_sam.sam.fast.mask_decoder import FastMaskDecoder
from grounded_sam.sam.fast.transformer import FastTwoWayTransformer, ImageTokens


def supports_gate(decoder: FastMaskDecoder, image_embedding: torch.Tensor) -> bool:
    """Whether :func:`gate_ious` can run ``decoder`` on ``image_embedding`` (SAM's two-block transformer,
    one embedding shared by every prompt)."""
    transformer = decoder.transformer
    return (
        isinstance(transformer, FastTwoWayTransformer)
        and transformer.depth == 2
        and image_embedding.shape[0] == 1
    )


class _RunningAttention:
    """Attention of queries (B, Lq, C) over image tokens that arrive in chunks (values; plus a shared
    offset, their positional encoding, as keys), through :meth:`FastAttention.wide_queries`: keeps each wide
    query's running maximum score, softmax normaliser and weighted value sum. The offset's scores come from
    its projection (:meth:`FastAttention.project_shared`, (heads, head_dim, L)), so tokens plus offset are
    never formed."""

    def __init__(
        self, attention: FastAttention, queries: torch.Tensor, projected_offset: torch.Tensor
    ) -> None:
        self.attention = attention
        self.heads = attention.head_queries(queries)
        self.queries = attention.wide_queries(queries, self.heads)
        self.offset = projected_offset
        batch, count, dim = self.queries.shape
        self.maximum = queries.new_full((batch, count, 1), float("-inf"))
        self.total = queries.new_zeros((batch, count, 1))
        self.weighted = queries.new_zeros((batch, count, dim))

    def add(self, tokens: torch.Tensor, rows: slice) -> None:
        """Take in the chunk ``rows`` of the image tokens (B, r, C)."""
        offset = self.attention.shared_key_scores(self.heads, self.offset[..., rows])
        scores = torch.bmm(self.queries, tokens.transpose(1, 2)).add_(offset)
        maximum = torch.maximum(self.maximum, scores.amax(-1, keepdim=True))
        rescale = torch.exp(self.maximum - maximum)
        weights = torch.exp(scores - maximum)
        self.total = self.total * rescale + weights.sum(-1, keepdim=True)
        self.weighted = torch.baddbmm(self.weighted * rescale, weights, tokens)
        self.maximum = maximum

    def mixed(self) -> torch.Tensor:
        """The softmax-weighted values (B, R, C) over every chunk so far."""
        return self.weighted / self.total


def gate_ious(
    decoder: FastMaskDecoder,
    image: ImageTokens,
    sparse: torch.Tensor,
    multimask_output: bool,
    chunk_rows: int | None = None,
) -> torch.Tensor:
    """The IoUs ``decoder.iou_from_tokens`` gives for these prompts, without their image tokens.

    Args:
        image: ``decoder.image_tokens`` of the (1, C, h, w) embedding shared by the prompts, with the
            no-mask dense embedding (best made with ``project=True``, once for many calls).
        sparse: (B, K, C) prompt tokens.
        multimask_output: as in :meth:`MaskDecoder.forward`.
        chunk_rows: image tokens per chunk (default :data:`~grounded_sam.sam.budgets.GATE_CHUNK_ROWS`).

    Returns:
        (B, 3 or 1) predicted IoUs, equal to the plain path's up to float rounding.
    """
    transformer: FastTwoWayTransformer = decoder.transformer  # type: ignore[assignment]
    first, second = transformer.layers
    batch = sparse.shape[0]
    output_tokens = torch.cat([decoder.iou_token.weight, decoder.mask_tokens.weight]).expand(batch, -1, -1)
    prompt = torch.cat([output_tokens, sparse], dim=1)  # also the tokens' positional encoding
    shared = image.projections or transformer.shared_projections(image.keys_with_pe, image.pe)
    (pe_keys, pe_queries), final_pe = shared.block_pe[0], shared.final_pe
    chunk_rows = chunk_rows or budgets.GATE_CHUNK_ROWS
    chunks = [slice(start, start + chunk_rows) for start in range(0, image.keys.shape[1], chunk_rows)]

    # Block 1, token side (the image is still shared), then block 2's token self-attention.
    queries = first.attend_tokens(prompt, prompt)
    t2i = first.cross_attn_token_to_image
    queries = first.feed_forward(first.norm2(t2i.attend_keys(queries + prompt, *image.first_keys) + queries))
    i2t = first.cross_attn_image_to_token
    first_rows = i2t.key_rows(queries + prompt, queries)
    queries = second.attend_tokens(queries, prompt)

    # Block 1, image side, chunk by chunk; block 2's token→image attention accumulates over the chunks.
    t2i = second.cross_attn_token_to_image
    running = _RunningAttention(t2i, queries + prompt, pe_keys)
    first_image = []
    for rows in chunks:
        scores = i2t.shared_query_scores(first_rows, shared.first_queries[..., rows])
        tokens = first.norm4(i2t.mix_rows(first_rows, scores, image.keys[:, rows]))
        running.add(tokens, rows)
        first_image.append(tokens)
    queries = second.feed_forward(second.norm2(t2i.finish_wide(running.mixed(), prompt.shape[1]) + queries))

    # Block 2, image side, chunk by chunk, straight into the IoU token's final attention.
    i2t = second.cross_attn_image_to_token
    second_rows = i2t.key_rows(queries + prompt, queries)
    final: FastAttention = transformer.final_attn_token_to_image
    iou_token = queries[:, :1]
    running = _RunningAttention(final, iou_token + prompt[:, :1], final_pe)
    for rows, tokens in zip(chunks, first_image, strict=True):
        scores = i2t.row_scores(second_rows, tokens, offset=pe_queries[..., rows])
        tokens = second.norm4(i2t.mix_rows(second_rows, scores, tokens, in_place=True))
        running.add(tokens, rows)
    attended = transformer.norm_final_attn(final.finish_wide(running.mixed(), 1) + iou_token)
    return decoder.iou_from_tokens(attended, multimask_output)
