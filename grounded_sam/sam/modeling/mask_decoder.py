"""SAM's mask decoder: image embedding + prompt embeddings → low-resolution mask logits and IoU scores.

State-dict keys and shapes are those of ``segment_anything.modeling.MaskDecoder``. The staged form that
decodes many prompts against one image without copies is :mod:`grounded_sam.sam.fast.mask_decoder`.
"""

from __future__ import annotations

import torch
from torch import nn

from grounded_sam.sam.modeling.common import MLP, LayerNorm2d


class MaskDecoder(nn.Module):
    """Predicts masks from prompt tokens with a two-way transformer and a hypernetwork per mask token.

    Example::

        decoder = MaskDecoder(transformer_dim=256, transformer=TwoWayTransformer())
        masks, iou = decoder(image_embedding, prompt_encoder.get_dense_pe(), sparse, dense, True)
        # image_embedding (1, 256, 64, 64), sparse (N, K, 256) → masks (N, 3, 256, 256), iou (N, 3)
    """

    def __init__(
        self,
        *,
        transformer_dim: int = 256,
        transformer: nn.Module,
        num_multimask_outputs: int = 3,
        iou_head_depth: int = 3,
        iou_head_hidden_dim: int = 256,
    ) -> None:
        """``transformer`` maps (image (1 or N, C, h, w), pe (1, C, h, w), tokens (N, T, C)) to
        (tokens (N, T, C), image (N, h*w, C)), like
        :class:`~grounded_sam.sam.modeling.transformer.TwoWayTransformer`.
        """
        super().__init__()
        self.transformer_dim = transformer_dim
        self.transformer = transformer
        self.num_multimask_outputs = num_multimask_outputs
        self.num_mask_tokens = num_multimask_outputs + 1
        self.iou_token = nn.Embedding(1, transformer_dim)
        self.mask_tokens = nn.Embedding(self.num_mask_tokens, transformer_dim)
        self.output_upscaling = nn.Sequential(
            nn.ConvTranspose2d(transformer_dim, transformer_dim // 4, kernel_size=2, stride=2),
            LayerNorm2d(transformer_dim // 4),
            nn.GELU(),
            nn.ConvTranspose2d(transformer_dim // 4, transformer_dim // 8, kernel_size=2, stride=2),
            nn.GELU(),
        )
        self.output_hypernetworks_mlps = nn.ModuleList(
            MLP(transformer_dim, transformer_dim, transformer_dim // 8, 3)
            for _ in range(self.num_mask_tokens)
        )
        self.iou_prediction_head = MLP(
            transformer_dim, iou_head_hidden_dim, self.num_mask_tokens, iou_head_depth
        )

    def forward(
        self,
        image_embeddings: torch.Tensor,
        image_pe: torch.Tensor,
        sparse_prompt_embeddings: torch.Tensor,
        dense_prompt_embeddings: torch.Tensor,
        multimask_output: bool,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Decode N prompts against one image.

        Args:
            image_embeddings: (1, C, h, w) image embedding (batch N is accepted too: one per prompt).
            image_pe: (1, C, h, w) from ``PromptEncoder.get_dense_pe()``.
            sparse_prompt_embeddings: (N, K, C) point and box tokens.
            dense_prompt_embeddings: (N or 1, C, h, w) mask-input embedding (1 for the no-mask vector).
            multimask_output: return the three ambiguity-resolving masks (tokens 1..3) instead of the
                single-mask token 0.

        Returns:
            low-resolution mask logits (N, 3 or 1, 4h, 4w) and predicted IoUs (N, 3 or 1).
        """
        batch = sparse_prompt_embeddings.shape[0]
        self._check(image_embeddings, dense_prompt_embeddings, batch)
        output_tokens = torch.cat([self.iou_token.weight, self.mask_tokens.weight]).expand(batch, -1, -1)
        tokens = torch.cat([output_tokens, sparse_prompt_embeddings], dim=1)
        image = image_embeddings + dense_prompt_embeddings
        tokens, image_tokens = self.transformer(image, image_pe, tokens)
        height, width = image.shape[-2:]
        features = self.output_upscaling(
            image_tokens.transpose(1, 2).reshape(batch, self.transformer_dim, height, width)
        )
        first, stop = self._selected(multimask_output)
        hyper = torch.stack(
            [self.output_hypernetworks_mlps[i](tokens[:, 1 + i]) for i in range(first, stop)], 1
        )
        masks = (hyper @ features.flatten(2)).view(batch, stop - first, *features.shape[-2:])
        return masks, self.iou_prediction_head(tokens[:, 0])[:, first:stop]

    def _selected(self, multimask_output: bool) -> tuple[int, int]:
        """Mask-token range returned: the ambiguity-resolving tokens 1.., or the single-mask token 0."""
        return (1, self.num_mask_tokens) if multimask_output else (0, 1)

    def _check(self, image: torch.Tensor, dense: torch.Tensor, batch: int) -> None:
        for name, tensor in (("image_embeddings", image), ("dense_prompt_embeddings", dense)):
            if (
                tensor.ndim != 4
                or tensor.shape[0] not in (1, batch)
                or tensor.shape[1] != self.transformer_dim
            ):
                raise ValueError(
                    f"{name} must be (1 or {batch}, {self.transformer_dim}, h, w) for {batch} prompts, "
                    f"got {tuple(tensor.shape)}"
                )
        if image.shape[-2:] != dense.shape[-2:]:
            raise ValueError(
                f"dense_prompt_embeddings grid {tuple(dense.shape[-2:])} differs from the image embedding's "
                f"{tuple(image.shape[-2:])}"
            )
