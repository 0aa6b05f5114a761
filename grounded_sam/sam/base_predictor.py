"""What every SAM-style predictor shares: the embedding cache, image loading and the numpy prompt API.

A subclass (ours for :class:`~grounded_sam.sam.modeling.sam.Sam`, SAM 2's for ``transformers``) says
how an image is embedded, how pixel prompts map into its encoder's frame, and how prompts are decoded.
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from typing import Any, Literal

import numpy as np
import torch

from grounded_sam.io import ImageInput, load_image
from grounded_sam.sam.prompt_checks import check_mask_input, check_points, clip_boxes, to_box_array

Prediction = tuple[np.ndarray, np.ndarray, np.ndarray]
TorchPrediction = tuple[torch.Tensor, torch.Tensor, torch.Tensor]


def pixel_digest(pixels: np.ndarray) -> str:
    """A short hash identifying an (H, W, 3) uint8 image."""
    digest = hashlib.blake2b(pixels.tobytes(), digest_size=16)
    digest.update(str(pixels.shape).encode())
    return digest.hexdigest()


def prompt_count(
    point_coords: torch.Tensor | None,
    point_labels: torch.Tensor | None,
    boxes: torch.Tensor | None,
    mask_input: torch.Tensor | None,
) -> int:
    """The common batch size N of batched prompt tensors (``None`` skipped); ValueError if they differ,
    if none is given, or if points come without labels (or labels without points)."""
    if (point_coords is None) != (point_labels is None):
        raise ValueError("point_coords and point_labels must be given together")
    counts = {int(p.shape[0]) for p in (point_coords, boxes, mask_input) if p is not None}
    if not counts:
        raise ValueError("give at least one prompt: points, a box or a mask input")
    if len(counts) > 1:
        raise ValueError(f"points, boxes and mask inputs must have the same batch size, got {sorted(counts)}")
    return counts.pop()


class PromptPredictor(ABC):
    """Embed an image once, then decode any number of point / box / mask prompts given in its pixels.

    Subclasses set ``self.model`` and ``self._embedding = None`` and implement :meth:`_embed`,
    :meth:`_to_input_frame` and :meth:`predict_torch`; embeddings have ``original_size`` and
    ``image_digest`` attributes.
    """

    model: Any
    _embedding: Any

    @property
    def device(self) -> torch.device:
        return self.model.device

    @property
    def is_image_set(self) -> bool:
        return self._embedding is not None

    @property
    def embedding(self) -> Any:
        """The cached embedding of the current image."""
        if self._embedding is None:
            raise RuntimeError("no image is set: call set_image(image) before predicting")
        return self._embedding

    @property
    def original_size(self) -> tuple[int, int]:
        return self.embedding.original_size

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
        self.reset_image()
        self._embed(pixels, digest)

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
            point_coords: (P, 2) XY pixels in the original image, or (N, P, 2) with N prompts.
            point_labels: (P,) or (N, P): 1 foreground, 0 background.
            box: (4,) XYXY pixels; or (N, 4) to decode N boxes in one batched call. Clipped to the image.
            mask_input: (1, h, w) low-res logits from an earlier call, or (N, 1, h, w).
            multimask_output: return three candidate masks per prompt instead of one.
            return_logits: return mask logits instead of booleans.

        Returns:
            masks (C, H, W) bool, scores (C,), low-res logits (C, h, w) for a single prompt; with an (N, 4)
            box (N > 1) or (N, P, 2) points each gains a leading N axis.
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
        """Decode (N, 4) XYXY pixel boxes in one call: (N, C, H, W) masks, (N, C) scores, (N, C, h, w) logits.

        N = 0 gives empty arrays of the right shapes.
        """
        return self._predict_numpy(None, None, to_box_array(boxes), None, multimask_output, return_logits)

    def _predict_numpy(
        self,
        point_coords: np.ndarray | None,
        point_labels: np.ndarray | None,
        boxes: np.ndarray | None,
        mask_input: np.ndarray | None,
        multimask_output: bool,
        return_logits: bool,
    ) -> Prediction:
        """Validate pixel prompts, move them into the encoder's frame and run :meth:`predict_torch`."""
        height, width = self.original_size
        coords_t = labels_t = boxes_t = masks_t = None
        if point_coords is not None or point_labels is not None:
            coords, labels = check_points(point_coords, point_labels)
            coords_t = self._to_input_frame(torch.from_numpy(coords)).to(self.device)
            labels_t = torch.from_numpy(labels).to(self.device, torch.int)
        if boxes is not None:
            corners = torch.from_numpy(clip_boxes(boxes, width, height)).reshape(-1, 2, 2)
            boxes_t = self._to_input_frame(corners).reshape(-1, 4).to(self.device)
        if mask_input is not None:
            masks_t = torch.as_tensor(check_mask_input(mask_input), dtype=torch.float32, device=self.device)
        masks, scores, low_res = self.predict_torch(
            coords_t, labels_t, boxes_t, masks_t, multimask_output, return_logits
        )
        return masks.cpu().numpy(), scores.float().cpu().numpy(), low_res.float().cpu().numpy()

    @abstractmethod
    def _embed(self, pixels: np.ndarray, digest: str) -> None:
        """Compute and keep the embedding of (H, W, 3) uint8 RGB ``pixels`` (``digest`` identifies them)."""

    @abstractmethod
    def _to_input_frame(self, xy: torch.Tensor) -> torch.Tensor:
        """(..., 2) XY pixels of the original image → the encoder input's frame."""

    @abstractmethod
    def predict_torch(
        self,
        point_coords: torch.Tensor | None,
        point_labels: torch.Tensor | None,
        boxes: torch.Tensor | None = None,
        mask_input: torch.Tensor | None = None,
        multimask_output: bool = True,
        return_logits: bool = False,
    ) -> TorchPrediction:
        """Batched prediction from tensors already in the encoder input's frame, on the model's device."""
