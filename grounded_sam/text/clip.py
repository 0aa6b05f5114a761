"""CLIP labeler: names masks (or boxes) with one of a list of classes, through open_clip.

Each region is cropped with :mod:`grounded_sam.text.crops` (background outside the region neutralised),
embedded by the image tower, and compared with the class names embedded by the text tower (averaged
over a few prompt templates). Probabilities are ``softmax(logit_scale * cosine)`` over the classes.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from grounded_sam.devices import Device, resolve_device
from grounded_sam.ops.boxes import masks_to_boxes
from grounded_sam.text.base import Labels
from grounded_sam.text.clip_models import (
    CLIP_MODELS,
    DEFAULT_CLIP_MODEL,
    clip_input_of,
    list_clip_models,
    load_open_clip,
    unknown_model_message,
)
from grounded_sam.text.crops import (
    Background,
    ClipInput,
    background_colour,
    expand_boxes,
    image_to_tensor,
    prepare_crops,
)
from grounded_sam.weights import resolve_weights

__all__ = ["CLIP_MODELS", "DEFAULT_TEMPLATES", "ClipLabeler", "build_clip_labeler", "list_clip_models"]


DEFAULT_TEMPLATES: tuple[str, ...] = (
    "a photo of a {}.",
    "a photo of the {}.",
    "a close-up photo of a {}.",
    "a cropped photo of a {}.",
    "a photo of a small {}.",
    "a photo of a large {}.",
)
_TEXT_BATCH = 256


class ClipLabeler:
    """Names masks or boxes with the class whose text embedding is closest to the region's crop.

    Args:
        model: an open_clip model (anything with ``encode_image``, ``encode_text`` and a log
            ``logit_scale``); moved to ``device`` and put in eval mode.
        tokenizer: turns a list of strings into an (n, context) token tensor.
        preprocess: the model's input size and normalisation: a :class:`ClipInput`, an open_clip
            preprocess config, an open_clip eval transform, or ``None`` to read it from the model.
        device: where to run (default: CUDA when available, else the CPU).
        templates: prompt templates with a ``{}`` for the class name; embeddings are averaged over them.
        threshold: a region whose top probability is below this gets class id -1 ("no label"); its
            score is still that probability. 0.0 (the default) always names the best class.
        background_value: fill for pixels outside the region: ``"mean"`` (the model's mean colour,
            zero after normalisation), ``"grey"``, an (r, g, b) in [0, 1], or ``None`` to keep them.
        margin: context around each region's box, as a fraction of its longer side (clipped at the
            image border).
        batch_size: crops per image-tower call.
        text_cache_size: how many class lists keep their text embeddings.
        rotations: test-time augmentation: each crop is shown turned by 0, 90, 180 and 270 degrees
            (``rotations`` of them: 1, 2 or 4) and the probabilities are averaged; for models whose
            classes do not depend on orientation (the demo CLIP's shapes). 1 (the default) shows it once.

    Example:
        >>> labeler = ClipLabeler.from_pretrained("clip_vit_b32")
        >>> labels = labeler.label(image, masks, ["cat", "dog"])  # (H, W, 3) uint8, (N, H, W) bool
        >>> labels.names, labels.scores
    """

    def __init__(
        self,
        model: nn.Module,
        tokenizer: Any,
        preprocess: ClipInput | Mapping[str, Any] | Any | None = None,
        device: Device = None,
        *,
        templates: Sequence[str] = DEFAULT_TEMPLATES,
        threshold: float = 0.0,
        background_value: Background = "mean",
        margin: float = 0.1,
        batch_size: int = 32,
        text_cache_size: int = 16,
        rotations: int = 1,
    ) -> None:
        self.templates = _check_templates(templates)
        if not 0.0 <= threshold <= 1.0:
            raise ValueError(f"threshold is a probability in [0, 1], got {threshold}")
        if margin < 0:
            raise ValueError(f"margin must be >= 0, got {margin}")
        if batch_size < 1 or text_cache_size < 1:
            raise ValueError(
                f"batch_size and text_cache_size must be >= 1, got {batch_size}, {text_cache_size}"
            )
        if rotations not in (1, 2, 4):
            raise ValueError(f"rotations must be 1, 2 or 4 (quarter turns of each crop), got {rotations!r}")
        self.rotations = int(rotations)
        self.device = resolve_device(device)
        self.model = model.to(self.device).eval()
        self.tokenizer = tokenizer
        self.clip_input = clip_input_of(preprocess, model)
        if self.rotations == 4 and self.clip_input.size[0] != self.clip_input.size[1]:
            raise ValueError(
                f"rotations=4 needs a square model input, not {self.clip_input.size}: use 1 or 2"
            )
        background_colour(background_value, self.clip_input)  # validates it
        self.background_value = background_value
        self.threshold = float(threshold)
        self.margin = float(margin)
        self.batch_size = int(batch_size)
        self._text_cache_size = int(text_cache_size)
        self._text_cache: OrderedDict[tuple[tuple[str, ...], tuple[str, ...]], torch.Tensor] = OrderedDict()
        floats = (p.dtype for p in model.parameters() if p.is_floating_point())
        self._dtype = next(floats, torch.float32)

    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str | os.PathLike[str] = DEFAULT_CLIP_MODEL,
        *,
        checkpoint: str | os.PathLike[str] | None = None,
        architecture: str | Mapping[str, Any] | None = None,
        device: Device = None,
        **options: Any,
    ) -> ClipLabeler:
        """A labeler from a registered name (weights via :func:`resolve_weights`) or a checkpoint file.

        Args:
            name_or_path: a name from :data:`CLIP_MODELS`, or the path of an open_clip checkpoint.
            checkpoint: an explicit weights file for a registered name.
            architecture: for a path only: the open_clip model name (e.g. ``"ViT-B-32"``) or a model
                config dict (``embed_dim``, ``vision_cfg``, ``text_cfg``, ...); it is never guessed.
            device: where to run (default: CUDA when available, else the CPU).
            **options: keyword arguments of :class:`ClipLabeler` (templates, threshold, ...).

        Raises:
            WeightsNotFoundError: no weights file was found (the message says where to put it).
            ValueError: an unknown name, a missing ``architecture``, or weights that do not fit it.
        """
        name = os.fspath(name_or_path)
        tag = None
        if name in CLIP_MODELS:
            if architecture is not None:
                raise ValueError(
                    f"{name!r} is registered with its own architecture; do not pass architecture="
                )
            spec = CLIP_MODELS[name]
            path = resolve_weights(name, spec.weights, checkpoint)
            architecture, tag = spec.architecture, spec.pretrained_tag
        else:
            if checkpoint is not None:
                raise ValueError(
                    f"{name!r} is not a registered CLIP model; checkpoint= is only for registered names"
                )
            if architecture is None:
                raise ValueError(unknown_model_message(name))
            path = resolve_weights(name, None, name)
        if path.is_dir():
            raise ValueError(f"{path} is a folder: pass the open_clip checkpoint file inside it")
        model, tokenizer, clip_input = load_open_clip(architecture, path, tag)
        return cls(model, tokenizer, clip_input, device, **options)

    def text_embeddings(self, classes: Sequence[str]) -> torch.Tensor:
        """(K, D) L2-normalised class embeddings, averaged over the templates; cached per class list."""
        names = _check_classes(classes)
        key = (names, self.templates)
        cached = self._text_cache.get(key)
        if cached is not None:
            self._text_cache.move_to_end(key)
            return cached
        prompts = [template.replace("{}", name) for name in names for template in self.templates]
        with torch.inference_mode():
            parts = [
                self.model.encode_text(self.tokenizer(prompts[start : start + _TEXT_BATCH]).to(self.device))
                for start in range(0, len(prompts), _TEXT_BATCH)
            ]
            per_prompt = F.normalize(torch.cat(parts).float(), dim=-1)
            embeddings = F.normalize(per_prompt.view(len(names), len(self.templates), -1).mean(dim=1), dim=-1)
        self._text_cache[key] = embeddings
        if len(self._text_cache) > self._text_cache_size:
            self._text_cache.popitem(last=False)
        return embeddings

    def label(self, image: np.ndarray, masks: np.ndarray, classes: Sequence[str]) -> Labels:
        """Labels for (N, H, W) bool ``masks`` of an (H, W, 3) uint8 RGB image.

        Empty masks get class id -1 and score 0; the others the best class and its probability
        (class id -1 if that is below ``threshold``).
        """
        names = _check_classes(classes)
        pixels = _check_image(image)
        height, width = pixels.shape[:2]
        masks = np.asarray(masks)
        if masks.ndim != 3 or masks.shape[1:] != (height, width):
            raise ValueError(
                f"masks must have shape (N, {height}, {width}) to match the image, got {masks.shape}"
            )
        masks = masks.astype(bool, copy=False)
        tight = masks_to_boxes(masks)
        filled = tight[:, 2] > tight[:, 0]
        boxes = expand_boxes(tight, self.margin, height, width)
        return self._classify(pixels, boxes, filled, names, masks)

    def label_boxes(self, image: np.ndarray, boxes: np.ndarray, classes: Sequence[str]) -> Labels:
        """Labels for (N, 4) XYXY pixel ``boxes`` of an (H, W, 3) uint8 RGB image.

        Pixels outside each box (grown by the margin) are neutralised; boxes with no area inside the
        image get class id -1 and score 0.
        """
        names = _check_classes(classes)
        pixels = _check_image(image)
        boxes = np.asarray(boxes, dtype=np.float32)
        if boxes.size == 0:
            boxes = boxes.reshape(0, 4)
        if boxes.ndim != 2 or boxes.shape[1] != 4 or not np.isfinite(boxes).all():
            raise ValueError(f"boxes must be finite (N, 4) XYXY pixels, got shape {boxes.shape}")
        grown = expand_boxes(boxes, self.margin, *pixels.shape[:2])
        filled = (grown[:, 2] > grown[:, 0]) & (grown[:, 3] > grown[:, 1])
        return self._classify(pixels, grown, filled, names, None)

    def _classify(
        self,
        image: np.ndarray,
        boxes: np.ndarray,
        filled: np.ndarray,
        names: tuple[str, ...],
        masks: np.ndarray | None,
    ) -> Labels:
        """Best class per region; regions where ``filled`` is False are skipped (-1, score 0)."""
        class_ids = np.full(len(boxes), -1, dtype=np.int64)
        scores = np.zeros(len(boxes), dtype=np.float32)
        every = np.zeros((len(boxes), len(names)), dtype=np.float32)
        todo = np.flatnonzero(filled)
        if todo.size == 0:
            return Labels(class_ids, scores, names, every)
        text = self.text_embeddings(names)
        scale = self.model.logit_scale.exp().clamp(max=100.0).float()
        probabilities = []
        with torch.inference_mode():
            image_tensor = image_to_tensor(image, self.device)
            for start in range(0, todo.size, self.batch_size):
                chosen = todo[start : start + self.batch_size]
                crops = prepare_crops(
                    image_tensor,
                    torch.from_numpy(boxes[chosen]),
                    self.clip_input,
                    None if masks is None else torch.from_numpy(masks[chosen]),
                    self.background_value,
                )
                probabilities.append(self._probabilities(crops, text, scale))
            every[todo] = torch.cat(probabilities).cpu().numpy()
        seen = every[todo]
        best_class, best_probability = seen.argmax(axis=1), seen.max(axis=1)
        class_ids[todo] = np.where(best_probability >= self.threshold, best_class, -1)
        scores[todo] = best_probability
        return Labels(class_ids, scores, names, every)

    def _probabilities(self, crops: torch.Tensor, text: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        """(N, K) class probabilities of (N, 3, h, w) model inputs, averaged over :attr:`rotations`."""
        step = 4 // self.rotations
        turned = torch.cat([torch.rot90(crops, k * step, dims=(2, 3)) for k in range(self.rotations)])
        features = F.normalize(self.model.encode_image(turned.to(self._dtype)).float(), dim=-1)
        probabilities = (scale * features @ text.T).softmax(dim=-1)
        return probabilities.view(self.rotations, len(crops), -1).mean(dim=0)


def build_clip_labeler(
    name: str = DEFAULT_CLIP_MODEL,
    checkpoint: str | os.PathLike[str] | None = None,
    device: Device = None,
    **options: Any,
) -> ClipLabeler:
    """A :class:`ClipLabeler` for a registered name (see :data:`CLIP_MODELS`); options as in its __init__."""
    if name not in CLIP_MODELS:
        raise ValueError(unknown_model_message(name))
    return ClipLabeler.from_pretrained(name, checkpoint=checkpoint, device=device, **options)


def _check_templates(templates: Sequence[str]) -> tuple[str, ...]:
    if isinstance(templates, str):
        raise TypeError("templates must be a list of strings, not one string")
    templates = tuple(templates)
    if not templates or not all(isinstance(t, str) and "{}" in t for t in templates):
        raise ValueError(
            f"templates must be a non-empty list of strings with a '{{}}' each, got {templates!r}"
        )
    return templates


def _check_classes(classes: Sequence[str]) -> tuple[str, ...]:
    if isinstance(classes, str):
        raise TypeError(f"classes must be a list of class names, not one string: use [{classes!r}]")
    names = tuple(classes)
    if not names:
        raise ValueError("classes is empty: pass at least one class name, e.g. ['cat', 'dog']")
    if not all(isinstance(name, str) and name.strip() for name in names):
        raise ValueError(f"classes must be non-empty strings, got {names!r}")
    return names


def _check_image(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8 or 0 in image.shape:
        raise ValueError(
            f"image must be a non-empty (H, W, 3) uint8 RGB array, got {image.dtype} {image.shape}; "
            "load files with grounded_sam.io.load_image"
        )
    return image
