"""The composite SAM network: an image encoder, a prompt encoder and a mask decoder, built elsewhere."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from grounded_sam.sam.modeling.mask_decoder import MaskDecoder
from grounded_sam.sam.modeling.prompt_encoder import PromptEncoder
from grounded_sam.sam.transforms import normalize_and_pad

PIXEL_MEAN = (123.675, 116.28, 103.53)
PIXEL_STD = (58.395, 57.12, 57.375)


class Sam(nn.Module):
    """Segment Anything: image → embedding once, then any number of prompts → masks.

    The parts are passed in already built (see :mod:`grounded_sam.sam.build`); this class only wires
    them together and holds the pre- and post-processing that belong to the network's input format.
    """

    mask_threshold: float = 0.0

    def __init__(
        self,
        image_encoder: nn.Module,
        prompt_encoder: PromptEncoder,
        mask_decoder: MaskDecoder,
        pixel_mean: Sequence[float] = PIXEL_MEAN,
        pixel_std: Sequence[float] = PIXEL_STD,
    ) -> None:
        super().__init__()
        self.image_encoder = image_encoder
        self.prompt_encoder = prompt_encoder
        self.mask_decoder = mask_decoder
        self.register_buffer("pixel_mean", torch.tensor(pixel_mean).view(-1, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(pixel_std).view(-1, 1, 1), persistent=False)

    @property
    def image_size(self) -> int:
        """Side of the square input the image encoder takes (1024 for the released models)."""
        return int(self.image_encoder.img_size)

    @property
    def device(self) -> torch.device:
        return self.pixel_mean.device

    def preprocess(self, image: torch.Tensor) -> torch.Tensor:
        """Normalise (B, 3, h, w) RGB values in 0..255 and zero-pad bottom/right to the encoder's square."""
        return normalize_and_pad(image, self.pixel_mean, self.pixel_std, self.image_size)

    def encode_image(self, image: torch.Tensor) -> torch.Tensor:
        """(B, 3, h, w) resized RGB in 0..255 (longest side = ``image_size``) → (B, C, S/16, S/16)."""
        return self.image_encoder(self.preprocess(image))

    def decode(
        self,
        image_embedding: torch.Tensor,
        points: tuple[torch.Tensor, torch.Tensor] | None = None,
        boxes: torch.Tensor | None = None,
        mask_input: torch.Tensor | None = None,
        multimask_output: bool = True,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Decode N prompts against one image embedding.

        Args:
            image_embedding: (1, C, h, w) from :meth:`encode_image`; shared by every prompt, never copied.
            points: coords (N, P, 2) XY in the resized-input frame, labels (N, P) (1 fg, 0 bg, -1 pad).
            boxes: (N, 4) XYXY in the resized-input frame.
            mask_input: (N, 1, 4h, 4w) low-resolution logits from an earlier prediction.
            multimask_output: three candidate masks per prompt instead of one.

        Returns:
            low-resolution mask logits (N, 3 or 1, 4h, 4w) and predicted IoUs (N, 3 or 1).
        """
        sparse, dense = self.prompt_encoder(points=points, boxes=boxes, masks=mask_input)
        return self.mask_decoder(
            image_embeddings=image_embedding,
            image_pe=self.prompt_encoder.get_dense_pe(),
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
            multimask_output=multimask_output,
        )

    def postprocess_masks(
        self, masks: torch.Tensor, input_size: tuple[int, int], original_size: tuple[int, int]
    ) -> torch.Tensor:
        """Low-res logits (N, C, 4h, 4w) → logits (N, C, H, W) at the original image size.

        Upsample to the encoder's square, drop the padding, then resize to the original image.
        """
        masks = F.interpolate(masks, (self.image_size, self.image_size), mode="bilinear", align_corners=False)
        masks = masks[..., : input_size[0], : input_size[1]]
        return F.interpolate(masks, original_size, mode="bilinear", align_corners=False)
