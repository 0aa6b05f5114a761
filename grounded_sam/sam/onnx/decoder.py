"""The prompt encoder + mask decoder of a :class:`Sam` with the official ONNX decoder's inputs and outputs.

Tools made for ``segment_anything``'s exported decoder (its web demo, CVAT, X-AnyLabeling) feed:

- ``image_embeddings`` (1, C, E, E) from the image encoder;
- ``point_coords`` (1, N, 2) XY in the encoder input's frame (the image resized so its long side is S);
- ``point_labels`` (1, N): 1 foreground, 0 background, 2 / 3 a box's top-left / bottom-right corner,
  -1 a padding point (the caller appends one when there is no box, as SAM was trained);
- ``mask_input`` (1, 1, 4E, 4E) low-resolution logits and ``has_mask_input`` (1,) 1.0 or 0.0;
- ``orig_im_size`` (2,) float (H, W) of the original image;

and read ``masks`` (1, M, H, W) logits at the original size, ``iou_predictions`` (1, M) and
``low_res_masks`` (1, M, 4E, 4E), where M is every mask token (the single-mask token first, then the
three ambiguity-resolving ones) or 1 with ``return_single_mask``.

This module holds the torch part (prompts → low-resolution masks); the post-processing that depends on
``orig_im_size`` is appended as plain ONNX nodes (:mod:`grounded_sam.sam.onnx.postprocess`), so one file
serves every image size.
"""

from __future__ import annotations

import torch
from torch import nn

from grounded_sam.sam.modeling.sam import Sam

BOX_CORNER_LABELS = (2, 3)


class OnnxPromptDecoder(nn.Module):
    """Official-contract prompts → (low-res mask logits (1, M, 4E, 4E), IoU predictions (1, M)).

    ``return_single_mask`` keeps one mask per prompt chosen as the official export does: the
    single-mask token when more than two points are given (a padding point counts), else the best of the
    three others by predicted IoU.
    """

    def __init__(self, model: Sam, return_single_mask: bool = False) -> None:
        super().__init__()
        self.prompt_encoder = model.prompt_encoder
        self.mask_decoder = model.mask_decoder
        self.return_single_mask = return_single_mask
        with torch.no_grad():  # a constant of the graph, computed once
            self.register_buffer("image_pe", model.prompt_encoder.get_dense_pe().clone(), persistent=False)

    def embed_points(self, point_coords: torch.Tensor, point_labels: torch.Tensor) -> torch.Tensor:
        """(1, N, 2) coords, (1, N) labels → (1, N, C) sparse embeddings; labels 2 and 3 are box corners."""
        encoder = self.prompt_encoder
        labels = point_labels.to(torch.int64)
        embedded = encoder.embed_points(point_coords, labels, pad=False)
        for label in BOX_CORNER_LABELS:
            corner = encoder.point_embeddings[label].weight[0]
            embedded = embedded + corner * (labels == label).unsqueeze(-1).to(embedded.dtype)
        return embedded

    def embed_mask(self, mask_input: torch.Tensor, has_mask_input: torch.Tensor) -> torch.Tensor:
        """(1, 1, 4E, 4E) logits and (1,) flag → (1, C, E, E): the mask's embedding, or the no-mask vector."""
        flag = has_mask_input.reshape(-1, 1, 1, 1)
        no_mask = self.prompt_encoder.no_mask_embed.weight.reshape(1, -1, 1, 1)
        return flag * self.prompt_encoder.embed_masks(mask_input) + (1 - flag) * no_mask

    def forward(
        self,
        image_embeddings: torch.Tensor,
        point_coords: torch.Tensor,
        point_labels: torch.Tensor,
        mask_input: torch.Tensor,
        has_mask_input: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        decoder = self.mask_decoder
        sparse = self.embed_points(point_coords, point_labels)
        dense = self.embed_mask(mask_input, has_mask_input)
        output_tokens = torch.cat([decoder.iou_token.weight, decoder.mask_tokens.weight])
        prompt_tokens = torch.cat([output_tokens.expand(sparse.shape[0], -1, -1), sparse], dim=1)
        # The transformer's own forward: the plain network's or, accelerated, its fast drop-in's.
        tokens, image_tokens = decoder.transformer(image_embeddings + dense, self.image_pe, prompt_tokens)
        grid = (image_embeddings.shape[-2], image_embeddings.shape[-1])
        features = decoder.output_upscaling(image_tokens.transpose(1, 2).unflatten(2, grid))
        hyper = torch.stack(
            [mlp(tokens[:, 1 + i]) for i, mlp in enumerate(decoder.output_hypernetworks_mlps)], dim=1
        )
        masks = (hyper @ features.flatten(2)).unflatten(2, features.shape[-2:])
        scores = decoder.iou_prediction_head(tokens[:, 0])
        if self.return_single_mask:
            masks, scores = select_single_mask(masks, scores, point_coords.shape[1])
        return masks, scores


def select_single_mask(
    masks: torch.Tensor, scores: torch.Tensor, num_points: int | torch.SymInt
) -> tuple[torch.Tensor, torch.Tensor]:
    """(1, M, h, w) logits and (1, M) scores → the one mask the official export keeps (see the class)."""
    prefer_single = torch.zeros_like(scores)
    prefer_single[:, 0] = 1000.0
    best = torch.argmax(scores + (num_points - 2.5) * prefer_single, dim=1)
    return masks[:, best], scores[:, best]
