"""SAM 2 / 2.1 (``transformers``' ``Sam2Model``) behind the interface of our :class:`SamPredictor`.

Same arguments, shapes, coordinate conventions and validation as :class:`grounded_sam.sam.SamPredictor`:
prompts are in pixels of the original image, masks come back at its size. Two SAM 2 differences show
through: the encoder input is a square ``image_size x image_size`` resize that does not keep the aspect
ratio (so :meth:`Sam2Predictor.predict_torch` takes coordinates scaled per axis), and with
``multimask_output=False`` SAM 2 falls back to the best of its three masks when the single one is unstable.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F

from grounded_sam.devices import Device
from grounded_sam.sam.base_predictor import PromptPredictor, TorchPrediction, prompt_count
from grounded_sam.sam2.build import (
    build_sam2,
    check_processor,
    default_processor,
    model_image_size,
    transformers_sam2,
)

if TYPE_CHECKING:
    from transformers import Sam2Model, Sam2Processor


@dataclass(frozen=True)
class Sam2ImageEmbedding:
    """What :meth:`Sam2Predictor.set_image` computes once per image.

    Attributes:
        features: the decoder's three (1, C_i, h_i, w_i) feature maps, finest first (strides 4, 8 and 16 of
            the encoder input); the last is the image embedding proper.
        original_size: (H, W) of the image as given.
        image_digest: a hash of the RGB pixels it was computed from.
    """

    features: tuple[torch.Tensor, ...]
    original_size: tuple[int, int]
    image_digest: str | None = None


class Sam2Predictor(PromptPredictor):
    """Embed an image once with SAM 2, then decode any number of point / box / mask prompts.

    Args:
        model: a ``transformers.Sam2Model`` (see :func:`grounded_sam.sam2.build_sam2`).
        processor: its ``Sam2Processor``; ``None`` uses SAM 2's standard pre-processing for the model's size.

    Example:
        >>> predictor = Sam2Predictor.from_pretrained("sam2.1_hiera_tiny")  # doctest: +SKIP
        >>> predictor.set_image("street.jpg")  # doctest: +SKIP
        >>> masks, scores, logits = predictor.predict_boxes(np.array([[10, 20, 200, 180]]))  # doctest: +SKIP
        >>> masks.shape  # (N, C, H, W)  # doctest: +SKIP
    """

    mask_threshold = 0.0

    def __init__(self, model: Sam2Model, processor: Sam2Processor | None = None) -> None:
        (model_cls,) = transformers_sam2("Sam2Model")
        if not isinstance(model, model_cls):
            raise TypeError(
                f"Sam2Predictor needs a transformers Sam2Model, got {type(model).__name__} "
                "(build one with grounded_sam.sam2.build_sam2; the video model is for tracking)"
            )
        if processor is None:
            processor = default_processor(model)
        check_processor(model, processor)
        self.model = model
        self.processor = processor
        self._embedding: Sam2ImageEmbedding | None = None

    @classmethod
    def from_pretrained(
        cls, name: str | None = None, checkpoint: str | os.PathLike[str] | None = None, device: Device = None
    ) -> Sam2Predictor:
        """A predictor on what :func:`~grounded_sam.sam2.build_sam2` builds (same arguments)."""
        return cls(*build_sam2(name, checkpoint=checkpoint, device=device))

    @property
    def image_size(self) -> int:
        """The side of the square image the encoder sees (1024 for the released models)."""
        return model_image_size(self.model)

    @property
    def mask_size(self) -> tuple[int, int]:
        """(h, w) of the low-resolution logits (256 x 256 for the released models)."""
        height, width = self.model.prompt_encoder.mask_input_size
        return (int(height), int(width))

    @property
    def input_size(self) -> tuple[int, int]:
        """(h, w) of the image inside the encoder input: always the full square for SAM 2."""
        return (self.image_size, self.image_size)

    def get_image_embedding(self) -> torch.Tensor:
        """The (1, C, h, w) image embedding of the current image (the coarsest of its feature maps)."""
        return self.embedding.features[-1]

    def set_embedding(self, embedding: Sam2ImageEmbedding) -> None:
        """Reuse an embedding computed earlier (e.g. cached per image by an app): no re-encoding."""
        where = embedding.features[-1].device
        if where != self.device:
            raise ValueError(f"the embedding is on {where}, the model on {self.device}")
        self._embedding = embedding

    def _embed(self, pixels: np.ndarray, digest: str) -> None:
        inputs = self.processor.image_processor(
            images=pixels, input_data_format="channels_last", return_tensors="pt"
        )
        pixel_values = inputs["pixel_values"].to(self.device, self.model.dtype)
        with torch.inference_mode():
            features = self.model.get_image_embeddings(pixel_values)
        self._embedding = Sam2ImageEmbedding(
            features=tuple(features), original_size=(pixels.shape[0], pixels.shape[1]), image_digest=digest
        )

    def to_input_frame(self, xy: torch.Tensor) -> torch.Tensor:
        """Scale (..., 2) XY pixel coordinates of the original image to the square encoder input."""
        height, width = self.original_size
        scaled = xy.to(torch.float32).clone()
        scaled[..., 0] = scaled[..., 0] * (self.image_size / width)
        scaled[..., 1] = scaled[..., 1] * (self.image_size / height)
        return scaled

    _to_input_frame = to_input_frame

    def predict_torch(
        self,
        point_coords: torch.Tensor | None,
        point_labels: torch.Tensor | None,
        boxes: torch.Tensor | None = None,
        mask_input: torch.Tensor | None = None,
        multimask_output: bool = True,
        return_logits: bool = False,
    ) -> TorchPrediction:
        """Batched prediction from tensors already in the encoder-input frame (see :meth:`to_input_frame`).

        Args:
            point_coords: (N, P, 2) XY in the square input frame; point_labels: (N, P).
            boxes: (N, 4) XYXY in the square input frame.
            mask_input: (N, 1, h, w) low-res logits, h, w = :attr:`mask_size`.

        Returns:
            masks (N, C, H, W) at the original size (bool unless ``return_logits``), IoU predictions (N, C)
            and low-res logits (N, C, h, w).
        """
        embedding = self.embedding
        if mask_input is not None and tuple(mask_input.shape[-2:]) != self.mask_size:
            raise ValueError(
                f"mask_input must be low-res logits of size {self.mask_size} (as returned by predict), "
                f"got {tuple(mask_input.shape[-2:])}"
            )
        count = prompt_count(point_coords, point_labels, boxes, mask_input)
        if count == 0:
            return self._empty(multimask_output, return_logits)
        # Sam2Model decodes a (images, prompts) grid. Prompts of one image share its embedding, but a
        # dense mask prompt is added per image, so mask prompts are laid out as N copies of the image.
        per_image = mask_input is not None
        features = list(embedding.features)
        if per_image:
            features = [feature.expand(count, -1, -1, -1) for feature in features]
        layout = (count, 1) if per_image else (1, count)
        with torch.inference_mode():
            outputs = self.model(
                image_embeddings=features,
                input_points=None if point_coords is None else point_coords.reshape(*layout, -1, 2),
                input_labels=None if point_labels is None else point_labels.reshape(*layout, -1),
                input_boxes=None if boxes is None else boxes.reshape(*layout, 4),
                input_masks=None if mask_input is None else mask_input.to(self.model.dtype),
                multimask_output=multimask_output,
            )
            low_res = outputs.pred_masks.flatten(0, 1)
            scores = outputs.iou_scores.flatten(0, 1)
            size = embedding.original_size
            masks = F.interpolate(low_res.float(), size, mode="bilinear", align_corners=False)
            if not return_logits:
                masks = masks > self.mask_threshold
        return masks, scores, low_res

    def _empty(self, multimask_output: bool, return_logits: bool) -> TorchPrediction:
        channels = 3 if multimask_output else 1
        dtype = torch.float32 if return_logits else torch.bool
        return (
            torch.zeros((0, channels, *self.original_size), dtype=dtype, device=self.device),
            torch.zeros((0, channels), device=self.device),
            torch.zeros((0, channels, *self.mask_size), device=self.device),
        )
