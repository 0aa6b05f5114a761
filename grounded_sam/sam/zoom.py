"""Zoomed box prompts: small boxes are decoded again in an enlarged window around them.

A small SAM sees a small object as a few cells of its image embedding (the demo SAM: one cell per 8 × 8
pixels), so the edges of an object under 400 pixels come out ragged. :class:`ZoomPredictor` decodes every
box against the whole image as usual, then, for each box whose longer side is under
``max_box_fraction`` of the image's longer side, cuts a square window ``factor`` times the box's longer
side around it, embeds that window at the encoder's full input size and decodes the box there: the object
now spans ``1 / factor`` of the input, as the objects SAM was trained on do.

On the demo model (synthetic scenes, seed 2000, 40 scenes) ``factor=3`` and ``max_box_fraction=0.25``
raise the box-prompt mask mIoU from 0.893 to 0.924 (objects under 400 pixels: 0.62 → 0.85) for about
30 ms of encoding per zoomed box on one CPU thread. Windows much tighter than ``factor=2.5`` are worse
than no zoom: the object then fills more of the input than any training object did.

Example:
    >>> predictor = ZoomPredictor(build_sam("demo_sam"))  # doctest: +SKIP
    >>> predictor.set_image(image)  # doctest: +SKIP
    >>> masks, scores, low_res = predictor.predict_boxes(boxes)  # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from grounded_sam.devices import PrecisionRequest
from grounded_sam.sam.base_predictor import Prediction
from grounded_sam.sam.modeling.sam import Sam
from grounded_sam.sam.predictor import ImageEmbedding, SamPredictor
from grounded_sam.sam.prompt_checks import clip_boxes, to_box_array

OUTSIDE_LOGIT = -100.0
"""Mask logit given (with ``return_logits``) to the pixels outside a zoomed box's window."""


@dataclass(frozen=True)
class ZoomConfig:
    """When and how far :class:`ZoomPredictor` zooms.

    Attributes:
        factor: side of the square window as a multiple of the box's longer side (> 1).
        max_box_fraction: boxes whose longer side is below this fraction of the image's longer side are
            zoomed (0 turns zooming off).
    """

    factor: float = 3.0
    max_box_fraction: float = 0.25

    def __post_init__(self) -> None:
        if not self.factor > 1.0:
            raise ValueError(f"factor must be > 1 (the window holds the box), got {self.factor!r}")
        if not 0.0 <= self.max_box_fraction <= 1.0:
            raise ValueError(f"max_box_fraction must be in [0, 1], got {self.max_box_fraction!r}")


def zoom_windows(boxes: np.ndarray, image_size: tuple[int, int], factor: float) -> np.ndarray:
    """Square windows around (N, 4) XYXY pixel boxes → (N, 4) int64 XYXY (far edge exclusive).

    Each window is ``factor`` times its box's longer side (at most the image's shorter side), centred on
    the box and shifted to lie inside the image of ``image_size`` (H, W).
    """
    height, width = image_size
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    longer = np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])
    side = np.clip(np.ceil(longer * factor), 1, min(height, width)).astype(np.int64)
    centre_x, centre_y = (boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2
    x0 = np.clip(np.round(centre_x - side / 2).astype(np.int64), 0, width - side)
    y0 = np.clip(np.round(centre_y - side / 2).astype(np.int64), 0, height - side)
    return np.stack([x0, y0, x0 + side, y0 + side], axis=1)


def boxes_to_zoom(boxes: np.ndarray, image_size: tuple[int, int], config: ZoomConfig) -> np.ndarray:
    """(N,) bool: which (N, 4) XYXY boxes ``config`` zooms in an image of ``image_size`` (H, W)."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    longer = np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])
    return (longer > 0) & (longer < config.max_box_fraction * max(image_size))


DEFAULT_ZOOM = ZoomConfig()


class ZoomPredictor(SamPredictor):
    """A :class:`SamPredictor` whose :meth:`predict_boxes` decodes small boxes in a zoomed window.

    Everything else (points, masks, :meth:`predict`, the cached embedding) is the plain predictor's. For a
    zoomed box the returned mask and predicted IoU are the window's (outside the window the mask is
    empty); its low-res logits stay the whole image's pass, so they can still prompt this image.
    ``zoom=None`` makes it a plain :class:`SamPredictor`, and so does an image given as an embedding
    (:meth:`set_torch_image`, :meth:`set_embedding`): zooming needs the pixels of :meth:`set_image`.
    """

    def __init__(
        self, model: Sam, precision: PrecisionRequest = "float32", zoom: ZoomConfig | None = DEFAULT_ZOOM
    ) -> None:
        super().__init__(model, precision)
        self.zoom = zoom
        self._window = SamPredictor(model, precision)
        self._pixels: np.ndarray | None = None

    def predict_boxes(
        self, boxes: np.ndarray, multimask_output: bool = False, return_logits: bool = False
    ) -> Prediction:
        """:meth:`SamPredictor.predict_boxes`, with the boxes :func:`boxes_to_zoom` picks decoded again
        in their :func:`zoom_windows`."""
        masks, scores, low_res = super().predict_boxes(boxes, multimask_output, return_logits)
        pixels = self._pixels
        if self.zoom is None or pixels is None or len(masks) == 0:
            return masks, scores, low_res
        height, width = self.original_size
        boxes = clip_boxes(to_box_array(boxes), width, height)
        chosen = np.flatnonzero(boxes_to_zoom(boxes, (height, width), self.zoom))
        windows = zoom_windows(boxes[chosen], (height, width), self.zoom.factor)
        self._window.precision = self.precision
        for row, (x0, y0, x1, y1) in zip(chosen, windows, strict=True):
            self._window.set_image(np.ascontiguousarray(pixels[y0:y1, x0:x1]))
            local = boxes[row] - np.array([x0, y0, x0, y0])
            window_masks, window_scores, _ = self._window.predict_boxes(
                local[None], multimask_output, return_logits
            )
            masks[row] = OUTSIDE_LOGIT if return_logits else False
            masks[row, :, y0:y1, x0:x1] = window_masks[0]
            scores[row] = window_scores[0]
        return masks, scores, low_res

    def _embed(self, pixels: np.ndarray, digest: str) -> None:
        super()._embed(pixels, digest)
        self._pixels = pixels

    def set_embedding(self, embedding: ImageEmbedding) -> None:
        super().set_embedding(embedding)
        self._pixels = None

    def reset_image(self) -> None:
        super().reset_image()
        self._pixels = None
