"""SAM's mask decoder in stages, for many prompts against one image.

:class:`FastMaskDecoder` is a drop-in for :class:`~grounded_sam.sam.modeling.mask_decoder.MaskDecoder`
(same parameters, same results up to float rounding) that :func:`grounded_sam.sam.fast.accelerate` swaps
in. All N prompts of one image are decoded against a batch-1 image embedding that is never copied per
prompt; callers that filter prompts on their predicted IoU can upscale only the survivors.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from grounded_sam.sam import budgets
from grounded_sam.sam.fast.transformer import BlockOutputs, ImageTokens
from grounded_sam.sam.modeling.mask_decoder import MaskDecoder


def prompts_per_pass(image_embedding: torch.Tensor) -> int:
    """How many prompts to decode at once against a (1, C, h, w) embedding.

    Each prompt gets its own (h*w, C) image tokens after the first two-way block. Kept under
    :data:`~grounded_sam.sam.budgets.PASS_BYTES` per pass, those tensors are reused from the allocator's
    heap instead of being fresh pages from the OS on every call (glibc maps blocks over 32 MiB anew each
    time), which made decoding 20 ViT-B boxes about a third faster on a CPU. Results do not depend on the
    pass size.
    """
    per_prompt = image_embedding[0].numel() * image_embedding.element_size()
    return max(1, budgets.PASS_BYTES // max(per_prompt, 1))


class Workspace:
    """Memory reused by successive :meth:`MaskDecoder.masks_from_tokens` calls of one caller.

    Not for sharing between threads: each decoding loop makes its own. ``gate_pays`` is what the first
    batch's probe of :func:`~grounded_sam.sam.fast.gated_decoding.decode_gated` found (None: not probed
    yet), so later batches of the same image and threshold skip the probe; it only steers the work, never
    the result.
    """

    def __init__(self) -> None:
        self._memory: torch.Tensor | None = None
        self.gate_pays: bool | None = None

    def take(self, shape: tuple[int, ...], like: torch.Tensor) -> torch.Tensor:
        """A tensor of ``shape`` with ``like``'s dtype and device, in memory kept from earlier calls."""
        count = math.prod(shape)
        memory = self._memory
        if (
            memory is None
            or memory.numel() < count
            or memory.dtype != like.dtype
            or memory.device != like.device
        ):
            memory = self._memory = torch.empty(count, dtype=like.dtype, device=like.device)
        return memory[:count].view(shape)


class FastMaskDecoder(MaskDecoder):
    """:class:`MaskDecoder` in stages: the transformer's image side made once for many prompt batches,
    the IoU read before any mask is upscaled, and the upscaling run a band of rows at a time into reused
    memory. Its transformer is a :class:`~grounded_sam.sam.fast.transformer.FastTwoWayTransformer`.
    """

    def forward(
        self,
        image_embeddings: torch.Tensor,
        image_pe: torch.Tensor,
        sparse_prompt_embeddings: torch.Tensor,
        dense_prompt_embeddings: torch.Tensor,
        multimask_output: bool,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`MaskDecoder.forward`: the transformer in stages, then only the selected masks."""
        tokens, image_tokens = self.attend(
            image_embeddings,
            image_pe,
            sparse_prompt_embeddings,
            dense_prompt_embeddings,
            self.output_tokens(multimask_output),
        )
        grid = (image_embeddings.shape[-2], image_embeddings.shape[-1])
        masks = self.masks_of(tokens[:, 1:], image_tokens, grid, multimask_output)
        return masks, self.iou_from_tokens(tokens, multimask_output)

    def attend(
        self,
        image_embeddings: torch.Tensor,
        image_pe: torch.Tensor,
        sparse_prompt_embeddings: torch.Tensor,
        dense_prompt_embeddings: torch.Tensor,
        tokens: slice | list[int] = slice(None),
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The transformer stage of :meth:`forward` (same arguments).

        Returns output tokens (N, 1 + num_mask_tokens + K, C) (IoU token, mask tokens, prompt tokens; only
        the ``tokens`` of them, e.g. :meth:`output_tokens`) and image tokens (N, h*w, C). Callers that
        filter prompts on the IoU first can then upscale only the survivors with :meth:`masks_from_tokens`.
        """
        state = self.run_blocks(image_embeddings, image_pe, sparse_prompt_embeddings, dense_prompt_embeddings)
        batch = sparse_prompt_embeddings.shape[0]
        return self.transformer.final_attention(state, tokens), state.keys.expand(batch, -1, -1)

    def run_blocks(
        self,
        image_embeddings: torch.Tensor,
        image_pe: torch.Tensor,
        sparse_prompt_embeddings: torch.Tensor,
        dense_prompt_embeddings: torch.Tensor,
    ) -> BlockOutputs:
        """:meth:`attend` up to the transformer's final attention (see ``TwoWayTransformer.final_attention``),
        so a caller can finish only the IoU token first."""
        batch = sparse_prompt_embeddings.shape[0]
        self._check(image_embeddings, dense_prompt_embeddings, batch)
        image = self.image_tokens(
            image_embeddings,
            image_pe,
            dense_prompt_embeddings,
            project=batch >= budgets.SHARED_PROJECTIONS_MIN_PROMPTS,
        )
        return self.attend_blocks(image, sparse_prompt_embeddings)

    def image_tokens(
        self,
        image_embeddings: torch.Tensor,
        image_pe: torch.Tensor,
        dense_prompt_embeddings: torch.Tensor,
        project: bool = False,
    ) -> ImageTokens:
        """The transformer's image input for these embeddings (arguments as in :meth:`forward`); a caller
        decoding batch after batch of prompts with the same dense embedding makes it once, with
        ``project`` (see ``TwoWayTransformer.image_tokens``) when they are many."""
        return self.transformer.image_tokens(image_embeddings + dense_prompt_embeddings, image_pe, project)

    def attend_blocks(self, image: ImageTokens, sparse_prompt_embeddings: torch.Tensor) -> BlockOutputs:
        """:meth:`run_blocks` on :meth:`image_tokens` made beforehand."""
        batch = sparse_prompt_embeddings.shape[0]
        output_tokens = torch.cat([self.iou_token.weight, self.mask_tokens.weight]).expand(batch, -1, -1)
        tokens = torch.cat([output_tokens, sparse_prompt_embeddings], dim=1)
        return self.transformer.attend_blocks(image, tokens)

    def iou_from_tokens(self, tokens: torch.Tensor, multimask_output: bool) -> torch.Tensor:
        """Output tokens (N, T, C) → predicted IoUs (N, 3 or 1)."""
        first, stop = self._selected(multimask_output)
        return self.iou_prediction_head(tokens[:, 0])[:, first:stop]

    def masks_from_tokens(
        self,
        tokens: torch.Tensor,
        image_tokens: torch.Tensor,
        grid: tuple[int, int],
        multimask_output: bool,
        workspace: Workspace | None = None,
    ) -> torch.Tensor:
        """Output tokens (N, T, C) and image tokens (N, h*w, C) on an (h, w) grid → mask logits
        (N, 3 or 1, 4h, 4w). Only the selected mask tokens' hypernetworks run (see :meth:`masks_of`)."""
        selected = tokens[:, self.mask_tokens_read(multimask_output)]
        return self.masks_of(selected, image_tokens, grid, multimask_output, workspace)

    def masks_of(
        self,
        mask_tokens: torch.Tensor,
        image_tokens: torch.Tensor,
        grid: tuple[int, int],
        multimask_output: bool,
        workspace: Workspace | None = None,
        out: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The selected mask tokens (N, M, C) (:meth:`mask_tokens_read` of the output tokens) and image
        tokens (N, h*w, C) on an (h, w) grid → mask logits (N, M, 4h, 4w), written into ``out`` when given.

        The upscaling acts on each grid cell alone, so it runs on bands of prompts, or of grid rows of one
        prompt, of :data:`~grounded_sam.sam.budgets.UPSCALE_BYTES` features: each band's features go
        through the hypernetwork product while they are still in cache, instead of streaming (N, 4h, 4w,
        C/8) features through memory (a third faster on a CPU), and its logits go straight to their place
        in the output. ``workspace`` (no autograd) holds a band's features across calls.
        """
        first = self._selected(multimask_output)[0]
        mlps = self.output_hypernetworks_mlps[first : first + mask_tokens.shape[1]]
        hyper = torch.stack([mlp(mask_tokens[:, i]) for i, mlp in enumerate(mlps)], 1)
        batch, masks, (height, width) = len(hyper), hyper.shape[1], grid
        if out is None:
            out = hyper.new_empty((batch, masks, 4 * height, 4 * width))
        cells = image_tokens.unflatten(1, grid)  # (N, h, w, C)
        row_bytes = 16 * width * (self.transformer_dim // 8) * image_tokens.element_size()
        prompts = max(1, budgets.UPSCALE_BYTES // max(row_bytes * height, 1))
        step = height if prompts > 1 else max(1, budgets.UPSCALE_BYTES // max(row_bytes, 1))
        for start in range(0, batch, prompts):
            for top in range(0, height, step):
                rows = cells[start : start + prompts, top : top + step]
                logits = hyper[start : start + prompts] @ self._upscale(rows, workspace).flatten(1, -2).mT
                logits = logits.view(len(rows), masks, 2 * rows.shape[1], 2 * width, 2, 2)
                # (row, column) of the first upscaling, then of the second → pixel (2 row + i, 2 column + j).
                band = out[start : start + prompts, :, 4 * top : 4 * (top + rows.shape[1])]
                band.view((*logits.shape[:3], 2, 2 * width, 2)).copy_(logits.permute(0, 1, 2, 4, 3, 5))
        return out

    def output_tokens(self, multimask_output: bool) -> list[int]:
        """The output tokens :meth:`forward` reads: the IoU token, then the selected mask tokens
        (:meth:`mask_tokens_read`). The other mask tokens and the prompt tokens are never read after the
        transformer, so its final attention can skip them."""
        return [0, *range(*self._read(multimask_output))]

    def mask_tokens_read(self, multimask_output: bool) -> slice:
        """Where the selected mask tokens are among the transformer's output tokens."""
        return slice(*self._read(multimask_output))

    def _read(self, multimask_output: bool) -> tuple[int, int]:
        first, stop = self._selected(multimask_output)
        return 1 + first, 1 + stop

    def _upscale(self, cells: torch.Tensor, workspace: Workspace | None) -> torch.Tensor:
        """(N, h, w, C) image tokens → (N, 2h, 2w, 2, 2, C/8) mask features: the output of
        ``output_upscaling`` at pixel (2 row + i, 2 column + j) is at [:, row, column, i, j].

        Both transposed convolutions (kernel 2, stride 2) are one matrix product per cell or pixel, channels
        last. The first one's 2 × 2 blocks are shuffled into an image by the LayerNorm2d's input copy; the
        second one's stay in their pixel's block, since the hypernetwork reads channels. A quarter faster
        than the convolutions, same results up to float rounding. The GELUs (``output_upscaling`` 2 and
        4) are applied in place: on these large tensors a fresh output costs more than the activation.
        ``workspace`` (no autograd) holds the second product's output across calls.
        """
        conv1, norm, _, conv2, _ = self.output_upscaling
        batch, height, width, _ = cells.shape
        if workspace is None or torch.is_grad_enabled() or torch.is_autocast_enabled(cells.device.type):
            workspace = None
        blocks = self._block_product(conv1, cells.reshape(-1, conv1.in_channels), None)
        if not len(blocks):
            return blocks.new_zeros((batch, 2 * height, 2 * width, 2, 2, conv2.out_channels))
        image = blocks.view(batch, height, width, 2, 2, -1).transpose(2, 3)  # (N, h, i, w, j, C/4)
        image = torch.ops.aten.gelu_(F.layer_norm(image, image.shape[-1:], norm.weight, norm.bias, norm.eps))
        pixels = self._block_product(conv2, image.view(-1, conv2.in_channels), workspace)
        return torch.ops.aten.gelu_(pixels).view(batch, 2 * height, 2 * width, 2, 2, conv2.out_channels)

    @staticmethod
    def _block_product(
        conv: nn.ConvTranspose2d, rows: torch.Tensor, workspace: Workspace | None
    ) -> torch.Tensor:
        """A kernel-2, stride-2 transposed convolution of channels-last rows (P, in) → (P, 2, 2, out): the
        output of row p at sub-pixel (i, j) is at [p, i, j]."""
        weight = conv.weight.permute(0, 2, 3, 1).reshape(conv.in_channels, -1)  # columns (i, j, out)
        bias = conv.bias.repeat(4)
        if workspace is None:
            out = torch.addmm(bias, rows, weight)
        else:
            out = torch.addmm(bias, rows, weight, out=workspace.take((len(rows), len(bias)), rows))
        return out.view(len(rows), 2, 2, conv.out_channels)
