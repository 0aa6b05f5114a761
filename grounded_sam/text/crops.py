"""Mask and box crops for CLIP: one batched tensor of model inputs per list of regions.

Every region becomes one model input: its bounding box grown by a margin, clipped to the image,
widened to the model's aspect ratio (the part outside the image is padding), resampled with
``roi_align`` (area-averaged, so large boxes are not aliased), and normalised with the model's own
mean and std. Pixels outside the region (outside the mask, or outside the grown box for box regions)
are replaced by a neutral background colour so CLIP looks at the object and not at its neighbours.

Coordinates are continuous pixels: pixel ``(row, col)`` covers ``[col, col + 1) x [row, row + 1)``;
boxes are XYXY with an exclusive far edge.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
from open_clip import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD
from torchvision.ops import roi_align

Background = Literal["mean", "grey"] | tuple[float, float, float] | None

# Each output pixel reads MASK_SUBSAMPLES**2 mask samples, so mask edges come out soft, not jagged.
MASK_SUBSAMPLES = 2
_GREY = (0.5, 0.5, 0.5)


@dataclass(frozen=True)
class ClipInput:
    """What a CLIP image tower expects: input size and per-channel normalisation of [0, 1] RGB.

    Attributes:
        size: (height, width) of the model input in pixels (an int means a square input).
        mean: per-channel RGB mean subtracted from [0, 1] values.
        std: per-channel RGB std the centred values are divided by.
    """

    size: tuple[int, int]
    mean: tuple[float, float, float]
    std: tuple[float, float, float]

    def __post_init__(self) -> None:
        size = (self.size, self.size) if isinstance(self.size, int) else tuple(int(s) for s in self.size)
        if len(size) != 2 or min(size) < 1:
            raise ValueError(f"size must be a positive int or (height, width), got {self.size!r}")
        for name in ("mean", "std"):
            values = tuple(float(v) for v in getattr(self, name))
            if len(values) != 3:
                raise ValueError(f"{name} must have 3 values (R, G, B), got {values}")
            object.__setattr__(self, name, values)
        if min(self.std) <= 0:
            raise ValueError(f"std must be positive, got {self.std}")
        object.__setattr__(self, "size", size)

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> ClipInput:
        """From an open_clip preprocess config (``model.visual.preprocess_cfg``: size, mean, std)."""
        missing = {"size", "mean", "std"} - set(config)
        if missing:
            raise ValueError(f"preprocess config lacks {sorted(missing)}; it has {sorted(config)}")
        return cls(config["size"], tuple(config["mean"]), tuple(config["std"]))

    @classmethod
    def from_model(cls, model: Any) -> ClipInput:
        """From an open_clip model's ``visual.preprocess_cfg`` (else its ``image_size``, OpenAI mean/std)."""
        visual = getattr(model, "visual", model)
        config = dict(getattr(visual, "preprocess_cfg", None) or {})
        config.setdefault("size", getattr(visual, "image_size", None))
        if config["size"] is None:
            raise ValueError(
                "the model does not say its input size: pass preprocess=ClipInput(size, mean, std)"
            )
        config.setdefault("mean", OPENAI_DATASET_MEAN)
        config.setdefault("std", OPENAI_DATASET_STD)
        return cls.from_config(config)

    @classmethod
    def from_transform(cls, transform: Any) -> ClipInput:
        """From an open_clip / torchvision eval transform (a ``Compose`` ending in ``Normalize``).

        The size is taken from its ``CenterCrop`` (else its ``Resize``); its resizing itself is not
        used, since crops are padded to the input's aspect ratio rather than centre-cropped.
        """
        steps = list(getattr(transform, "transforms", [transform]))
        normalize = next((s for s in steps if hasattr(s, "mean") and hasattr(s, "std")), None)
        sized = [s for s in steps if type(s).__name__ == "CenterCrop"]
        sized += [s for s in steps if type(s).__name__ == "Resize"]
        if normalize is None or not sized:
            raise ValueError(
                f"cannot read the input size and normalisation from {transform!r}: pass a ClipInput "
                "or the model's preprocess config instead"
            )
        size = sized[0].size
        if isinstance(size, Sequence) and len(size) == 1:
            size = size[0]
        return cls(size, tuple(normalize.mean), tuple(normalize.std))


def background_colour(background: Background, clip_input: ClipInput) -> tuple[float, float, float]:
    """The [0, 1] RGB fill for neutralised and padded pixels (``None``: padding only, the mean)."""
    if background is None or background == "mean":
        return clip_input.mean
    if background == "grey":
        return _GREY
    if isinstance(background, str):
        raise ValueError(f"background must be 'mean', 'grey', an (r, g, b) tuple or None, got {background!r}")
    colour = tuple(float(v) for v in background)
    if len(colour) != 3 or not all(0.0 <= v <= 1.0 for v in colour):
        raise ValueError(f"a background colour must be 3 floats in [0, 1], got {background!r}")
    return colour  # type: ignore[return-value]


def expand_boxes(boxes: np.ndarray, margin: float, height: int, width: int) -> np.ndarray:
    """Grow (N, 4) XYXY boxes by ``margin`` times their longer side on every side, clipped to the image."""
    boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
    pad = margin * np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])
    grown = boxes + np.stack([-pad, -pad, pad, pad], axis=1)
    np.clip(grown[:, 0::2], 0, width, out=grown[:, 0::2])
    np.clip(grown[:, 1::2], 0, height, out=grown[:, 1::2])
    return grown


def fit_aspect(boxes: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Widen (N, 4) XYXY boxes about their centres to the aspect ratio of ``size`` (height, width)."""
    aspect = size[1] / size[0]
    centre_x, centre_y = (boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2
    box_w, box_h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    out_w = torch.maximum(box_w, box_h * aspect)
    out_h = out_w / aspect
    return torch.stack(
        [centre_x - out_w / 2, centre_y - out_h / 2, centre_x + out_w / 2, centre_y + out_h / 2], 1
    )


def _sample_points(starts: torch.Tensor, lengths: torch.Tensor, count: int) -> torch.Tensor:
    """(N, count) centres of ``count`` equal steps along each [start, start + length)."""
    steps = (torch.arange(count, device=starts.device, dtype=starts.dtype) + 0.5) / count
    return starts[:, None] + lengths[:, None] * steps


def _mask_alpha(masks: torch.Tensor, frames: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(N, h, w) fraction of each output pixel covered by its (N, H, W) bool mask, sampled in ``frames``."""
    count, height, width = masks.shape
    rows_out, cols_out = size
    xs = _sample_points(frames[:, 0], frames[:, 2] - frames[:, 0], cols_out * MASK_SUBSAMPLES).floor().long()
    ys = _sample_points(frames[:, 1], frames[:, 3] - frames[:, 1], rows_out * MASK_SUBSAMPLES).floor().long()
    inside = ((ys >= 0) & (ys < height))[:, :, None] & ((xs >= 0) & (xs < width))[:, None, :]
    index = torch.arange(count, device=masks.device)[:, None, None]
    hits = masks[index, ys.clamp(0, height - 1)[:, :, None], xs.clamp(0, width - 1)[:, None, :]] & inside
    hits = hits.view(count, rows_out, MASK_SUBSAMPLES, cols_out, MASK_SUBSAMPLES)
    return hits.float().mean(dim=(2, 4))


def _box_alpha(boxes: torch.Tensor, frames: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(N, h, w) 1 where an output pixel's centre lies inside its box, else 0."""
    xs = _sample_points(frames[:, 0], frames[:, 2] - frames[:, 0], size[1])
    ys = _sample_points(frames[:, 1], frames[:, 3] - frames[:, 1], size[0])
    in_x = (xs >= boxes[:, 0:1]) & (xs < boxes[:, 2:3])
    in_y = (ys >= boxes[:, 1:2]) & (ys < boxes[:, 3:4])
    return (in_y[:, :, None] & in_x[:, None, :]).float()


def image_to_tensor(image: np.ndarray, device: torch.device) -> torch.Tensor:
    """An (H, W, 3) uint8 RGB image as a (1, 3, H, W) float32 tensor in [0, 1] on ``device``."""
    return torch.from_numpy(np.array(image)).to(device).permute(2, 0, 1)[None].float() / 255.0


def prepare_crops(
    image: torch.Tensor,
    boxes: torch.Tensor,
    clip_input: ClipInput,
    masks: torch.Tensor | None = None,
    background: Background = "mean",
) -> torch.Tensor:
    """Normalised model inputs for N regions of one image.

    Args:
        image: (1, 3, H, W) float RGB in [0, 1] (see :func:`image_to_tensor`).
        boxes: (N, 4) float XYXY crop boxes in pixels (already grown and clipped, non-empty).
        clip_input: the model's input size and normalisation.
        masks: (N, H, W) bool, one per box, or ``None`` to keep everything inside each box.
        background: fill for pixels outside the region; ``None`` keeps them (padding still uses the mean).

    Returns:
        (N, 3, h, w) float32 tensor, ``(rgb - mean) / std``, with (h, w) = ``clip_input.size``.
    """
    if boxes.shape[0] == 0:
        return image.new_zeros((0, 3, *clip_input.size))
    fill = image.new_tensor(background_colour(background, clip_input)).view(1, 3, 1, 1)
    frames = fit_aspect(boxes.to(image), clip_input.size)
    indexed = torch.cat([frames.new_zeros((frames.shape[0], 1)), frames], dim=1)
    # Sampling the image minus the fill makes everything outside the image come out as the fill.
    pixels = roi_align(
        image - fill, indexed, clip_input.size, spatial_scale=1.0, sampling_ratio=-1, aligned=True
    )
    if masks is not None and background is not None:
        alpha = _mask_alpha(masks.to(image.device), frames, clip_input.size)
    else:
        # Bilinear sampling bleeds the edge half a pixel past the border: cut at the region exactly.
        height, width = image.shape[-2:]
        region = boxes.to(image) if background is not None else frames.new_tensor([[0, 0, width, height]])
        alpha = _box_alpha(region.expand_as(frames), frames, clip_input.size)
    pixels = pixels * alpha[:, None]
    mean = image.new_tensor(clip_input.mean).view(1, 3, 1, 1)
    std = image.new_tensor(clip_input.std).view(1, 3, 1, 1)
    return (pixels + fill - mean) / std
