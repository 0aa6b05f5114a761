"""Interactive prediction: embed an image once, then decode any number of point / box / mask prompts."""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

from grounded_sam.io import ImageInput, load_image
from grounded_sam.sam.prompts import (
    check_mask_input,
    check_points,
    clip_boxes,
    to_box_array,
)
from grounded_sam.sam.sam import Sam
from grounded_sam.sam.transforms import resize_longest_side, scale_boxes, scale_coords

Prediction = tuple[np.ndarray, np.ndarray, np.ndarray]


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


class SamPredictor:
    """A drop-in for ``segment_anything.SamPredictor`` that also decodes many boxes in one call.

    Example:
        >>> predictor = SamPredictor(build_sam("sam_vit_b"))  # doctest: +SKIP
        >>> predictor.set_image("street.jpg")  # doctest: +SKIP
        >>> masks, scores, logits = predictor.predict(box=np.array([[10, 20, 200, 180], [40, 60, 90, 120]]))
    """

    def __init__(self, model: Sam) -> None:
        self.model = model
        self._embedding: ImageEmbedding | None = None

    @property
    def device(self) -> torch.device:
        return self.model.device

    @property
    def is_image_set(self) -> bool:
        return self._embedding is not None

    @property
    def embedding(self) -> ImageEmbedding:
        """The cached embedding of the current image."""
        if self._embedding is None:
            raise RuntimeError("no image is set: call set_image(image) before predicting")
        return self._embedding

    @property
    def original_size(self) -> tuple[int, int]:
        return self.embedding.original_size

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

    def reset_image(self) -> None:
        """Forget the current image and its embedding."""
        self._embedding = None

    def set_image(self, image: ImageInput, image_format: Literal["RGB", "BGR"] = "RGB") -> None:
        """Load ``image`` (path, PIL image, HWC uint8 array or CHW tensor) and compute its embedding.

        EXIF orientation is applied and any colour mode is converted to RGB (see :func:`load_image`).
        ``image_format="BGR"`` declares that an array's channels are in OpenCV's order. Setting the same
        pixels again keeps the current embedding (call :meth:`reset_image` after changing the weights).
        """
        if image_format not in ("RGB", "BGR"):
            raise ValueError(f"image_format must be 'RGB' or 'BGR', got {image_format!r}")
        pixels = load_image(image)
        if image_format == "BGR":
            pixels = np.ascontiguousarray(pixels[..., ::-1])
        digest = pixel_digest(pixels)
        if self._embedding is not None and self._embedding.image_digest == digest:
            return
        resized = resize_longest_side(pixels, self.model.image_size)
        tensor = torch.tensor(resized, device=self.device).permute(2, 0, 1)[None]
        self.set_torch_image(tensor, (pixels.shape[0], pixels.shape[1]))
        self._embedding = dataclasses.replace(self.embedding, image_digest=digest)

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
        with torch.inference_mode():
            features = self.model.encode_image(transformed_image.to(self.device, torch.float32))
        self._embedding = ImageEmbedding(
            features=features,
            original_size=(int(original_image_size[0]), int(original_image_size[1])),
            input_size=(int(transformed_image.shape[-2]), int(transformed_image.shape[-1])),
        )

    def predict(
        self,
        point_coords: np.ndarray | None = None,
        point_labels: np.ndarray | None = None,
        box: np.ndarray | None = None,
        mask_input: np.ndarray | None = None,
        multimask_output: bool = True,
        return_logits: bool = False,
    ) -> Prediction:
        """Masks for one prompt, or for N boxes at once.

        Args:
            point_coords: (P, 2) XY pixels in the original image, or (N, P, 2) with N boxes.
            point_labels: (P,) or (N, P): 1 foreground, 0 background.
            box: (4,) XYXY pixels; or (N, 4) to decode N boxes in one batched call. Clipped to the image.
            mask_input: (1, 256, 256) low-res logits from an earlier call, or (N, 1, 256, 256).
            multimask_output: return three candidate masks per prompt instead of one.
            return_logits: return mask logits instead of booleans.

        Returns:
            masks (C, H, W) bool, scores (C,), low-res logits (C, 256, 256) for a single prompt; with
            an (N, 4) box (N > 1) each gains a leading N axis.
        """
        boxes = to_box_array(box) if box is not None else None
        batched = boxes is not None and boxes.shape[0] > 1
        if point_coords is not None and np.asarray(point_coords).ndim == 3:
            batched = True
        masks, scores, low_res = self._predict_numpy(
            point_coords, point_labels, boxes, mask_input, multimask_output, return_logits
        )
        if batched:
            return masks, scores, low_res
        return masks[0], scores[0], low_res[0]

    def predict_boxes(
        self, boxes: np.ndarray, multimask_output: bool = False, return_logits: bool = False
    ) -> Prediction:
        """Decode (N, 4) XYXY boxes in one call; always returns (N, C, H, W), (N, C), (N, C, 256, 256).

        N = 0 gives empty arrays of the right shapes.
        """
        box_array = to_box_array(boxes)
        return self._predict_numpy(None, None, box_array, None, multimask_output, return_logits)

    def _predict_numpy(
        self,
        point_coords: np.ndarray | None,
        point_labels: np.ndarray | None,
        boxes: np.ndarray | None,
        mask_input: np.ndarray | None,
        multimask_output: bool,
        return_logits: bool,
    ) -> Prediction:
        embedding = self.embedding
        height, width = embedding.original_size
        long_side = self.model.image_size
        points = None
        if point_coords is not None or point_labels is not None:
            coords, labels = check_points(point_coords, point_labels)
            coords_t = scale_coords(torch.from_numpy(coords), embedding.original_size, long_side)
            points = (coords_t.to(self.device), torch.from_numpy(labels).to(self.device, torch.int))
        boxes_t = None
        if boxes is not None:
            boxes = clip_boxes(boxes, width, height)
            boxes_t = scale_boxes(torch.from_numpy(boxes), embedding.original_size, long_side).to(self.device)
        masks_t = None
        if mask_input is not None:
            masks_t = torch.as_tensor(check_mask_input(mask_input), dtype=torch.float32, device=self.device)
        masks, scores, low_res = self.predict_torch(
            points[0] if points else None,
            points[1] if points else None,
            boxes_t,
            masks_t,
            multimask_output,
            return_logits,
        )
        return masks.cpu().numpy(), scores.cpu().numpy(), low_res.cpu().numpy()

    def predict_torch(
        self,
        point_coords: torch.Tensor | None,
        point_labels: torch.Tensor | None,
        boxes: torch.Tensor | None = None,
        mask_input: torch.Tensor | None = None,
        multimask_output: bool = True,
        return_logits: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
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
        if (point_coords is None) != (point_labels is None):
            raise ValueError("point_coords and point_labels must be given together")
        count = prompt_count(point_coords, boxes, mask_input)
        if count == 0:
            return self._empty(multimask_output, return_logits)
        points = (point_coords, point_labels) if point_coords is not None else None
        with torch.inference_mode():
            low_res, scores = self.model.decode(
                embedding.features, points, boxes, mask_input, multimask_output
            )
            masks = self.model.postprocess_masks(low_res, embedding.input_size, embedding.original_size)
            if not return_logits:
                masks = masks > self.model.mask_threshold
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


def pixel_digest(pixels: np.ndarray) -> str:
    """A short hash identifying an (H, W, 3) uint8 image."""
    digest = hashlib.blake2b(pixels.tobytes(), digest_size=16)
    digest.update(repr(pixels.shape).encode())
    return digest.hexdigest()


def prompt_count(*prompts: torch.Tensor | None) -> int:
    """The common batch size of the given prompt tensors (``None`` skipped); ValueError if they differ."""
    counts = {int(p.shape[0]) for p in prompts if p is not None}
    if not counts:
        raise ValueError("give at least one prompt: points, a box or a mask input")
    if len(counts) > 1:
        raise ValueError(f"points, boxes and mask inputs must have the same batch size, got {sorted(counts)}")
    return counts.pop()
