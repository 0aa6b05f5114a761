"""Interactive prediction: embed an image once, then decode any number of point / box / mask prompts."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch

from grounded_sam.devices import Precision, PrecisionRequest, precision_context, resolve_precision
from grounded_sam.sam.base_predictor import Prediction, PromptPredictor, TorchPrediction, prompt_count
from grounded_sam.sam.fast.int8 import int8_encoder
from grounded_sam.sam.fast.mask_decoder import prompts_per_pass
from grounded_sam.sam.modeling.sam import Sam
from grounded_sam.sam.transforms import resize_longest_side, scale_coords

__all__ = ["ImageEmbedding", "Prediction", "SamPredictor"]


@dataclass(frozen=True)
class ImageEmbedding:
    """What :meth:`SamPredictor.set_image` computes once per image.

    Attributes:
        features: (1, C, h, w) image embedding on the model's device.
        original_size: (H, W) of the image as given.
        input_size: (h, w) of the resized image inside the encoder's square input.
        image_digest: a hash of the RGB pixels it was computed from (``None`` for tensors given directly).
    """

    features: torch.Tensor
    original_size: tuple[int, int]
    input_size: tuple[int, int]
    image_digest: str | None = None


class SamPredictor(PromptPredictor):
    """A drop-in for ``segment_anything.SamPredictor`` that also decodes many boxes in one call.

    Example:
        >>> predictor = SamPredictor(build_sam("sam_vit_b"))  # doctest: +SKIP
        >>> predictor.set_image("street.jpg")  # doctest: +SKIP
        >>> masks, scores, logits = predictor.predict(box=np.array([[10, 20, 200, 180], [40, 60, 90, 120]]))

    ``precision="bfloat16"`` runs the network's matrix products in bfloat16 (autocast; embeddings, scores
    and logits are still returned as float32): the image encoder is about twice as fast where the hardware
    has bfloat16 matrix units (GPUs, Intel AMX CPUs), at the cost of embeddings that differ from float32
    ones by about 0.3 % (relative) and masks that are close to, not exactly, float32's. On a device
    without such units it is several times slower, and says so in a warning. ``precision="auto"`` picks
    bfloat16 where the device has them and float32 elsewhere (see
    :func:`~grounded_sam.devices.resolve_precision`). ``precision="int8"`` (x86 CPUs only, ValueError
    elsewhere) runs the image encoder's linear layers in int8 (:mod:`grounded_sam.sam.fast.int8`; the
    weights are quantized at the first image and kept): several times faster matrix products on any x86
    CPU, masks close to float32's but not exact; the mask decoder stays float32.
    """

    def __init__(self, model: Sam, precision: PrecisionRequest = "float32") -> None:
        self.model = model
        self.precision = precision
        self._embedding: ImageEmbedding | None = None

    @property
    def precision(self) -> Precision:
        """The network's precision, "float32", "bfloat16" or "int8" (see the class docstring); it can be
        changed, also to "auto", which is resolved for the model's device when set."""
        return self._precision

    @precision.setter
    def precision(self, value: str) -> None:
        self._precision = resolve_precision(value, self.device)

    @contextmanager
    def network_context(self) -> Iterator[None]:
        """Inference mode in the predictor's precision: what every run of the network here is inside."""
        with torch.inference_mode(), precision_context(self.precision, self.device):
            yield

    @property
    def input_size(self) -> tuple[int, int]:
        return self.embedding.input_size

    @property
    def features(self) -> torch.Tensor:
        return self.embedding.features

    def get_image_embedding(self) -> torch.Tensor:
        """The (1, C, h, w) embedding of the current image."""
        return self.features

    def set_embedding(self, embedding: ImageEmbedding) -> None:
        """Reuse an embedding computed earlier (e.g. cached per image by an app): no re-encoding."""
        if embedding.features.device != self.device:
            raise ValueError(f"the embedding is on {embedding.features.device}, the model on {self.device}")
        self._embedding = embedding

    def _embed(self, pixels: np.ndarray, digest: str) -> None:
        resized = resize_longest_side(pixels, self.model.image_size)
        tensor = torch.tensor(resized, device=self.device).permute(2, 0, 1)[None]
        self.set_torch_image(tensor, (pixels.shape[0], pixels.shape[1]))
        self._embedding = dataclasses.replace(self.embedding, image_digest=digest)

    def _to_input_frame(self, xy: torch.Tensor) -> torch.Tensor:
        return scale_coords(xy, self.original_size, self.model.image_size)

    def set_torch_image(self, transformed_image: torch.Tensor, original_image_size: tuple[int, int]) -> None:
        """Embed a (1, 3, h, w) image already resized so that max(h, w) equals the encoder's input size."""
        size = self.model.image_size
        if (
            transformed_image.ndim != 4
            or transformed_image.shape[:2] != (1, 3)
            or max(transformed_image.shape[2:]) != size
        ):
            raise ValueError(
                f"set_torch_image expects a (1, 3, h, w) tensor with max(h, w) == {size}, "
                f"got {tuple(transformed_image.shape)}"
            )
        self.reset_image()
        with self.network_context():
            features = self._encode(transformed_image.to(self.device, torch.float32))
        features = features.float()
        self._embedding = ImageEmbedding(
            features=features,
            original_size=(int(original_image_size[0]), int(original_image_size[1])),
            input_size=(int(transformed_image.shape[-2]), int(transformed_image.shape[-1])),
        )

    def _encode(self, image: torch.Tensor) -> torch.Tensor:
        """(1, 3, h, w) resized RGB → (1, C, S/16, S/16), through the int8 encoder in precision "int8"."""
        if self.precision == "int8":
            return int8_encoder(self.model.image_encoder)(self.model.preprocess(image))
        return self.model.encode_image(image)

    def predict_torch(
        self,
        point_coords: torch.Tensor | None,
        point_labels: torch.Tensor | None,
        boxes: torch.Tensor | None = None,
        mask_input: torch.Tensor | None = None,
        multimask_output: bool = True,
        return_logits: bool = False,
    ) -> TorchPrediction:
        """Batched prediction from tensors already in the resized-input frame, on the model's device.

        Args:
            point_coords: (N, P, 2) XY in the resized frame; point_labels: (N, P).
            boxes: (N, 4) XYXY in the resized frame.
            mask_input: (N, 1, 256, 256) low-res logits.

        Returns:
            masks (N, C, H, W) at the original size (bool unless ``return_logits``), IoU predictions
            (N, C) and low-res logits (N, C, 256, 256).
        """
        embedding = self.embedding
        count = prompt_count(point_coords, point_labels, boxes, mask_input)
        if count == 0:
            return self._empty(multimask_output, return_logits)
        step = prompts_per_pass(embedding.features)
        parts = []
        with self.network_context():
            for start in range(0, count, step):
                rows = slice(start, start + step)
                points = None if point_coords is None else (point_coords[rows], point_labels[rows])
                low_res, scores = self.model.decode(
                    embedding.features,
                    points,
                    None if boxes is None else boxes[rows],
                    None if mask_input is None else mask_input[rows],
                    multimask_output,
                )
                low_res, scores = low_res.float(), scores.float()
                masks = self.model.postprocess_masks(low_res, embedding.input_size, embedding.original_size)
                if not return_logits:
                    masks = masks > self.model.mask_threshold
                parts.append((masks, scores, low_res))
        if len(parts) == 1:
            return parts[0]
        masks, scores, low_res = (torch.cat(column) for column in zip(*parts, strict=True))
        return masks, scores, low_res

    def _empty(
        self, multimask_output: bool, return_logits: bool
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        channels = 3 if multimask_output else 1
        height, width = self.embedding.original_size
        low = self.model.prompt_encoder.mask_input_size
        dtype = torch.float32 if return_logits else torch.bool
        return (
            torch.zeros((0, channels, height, width), dtype=dtype, device=self.device),
            torch.zeros((0, channels), device=self.device),
            torch.zeros((0, channels, *low), device=self.device),
        )
