"""Training data for the demo CLIP: mask crops of synthetic scenes and the captions that describe them.

Crops are made exactly as :class:`grounded_sam.text.clip.ClipLabeler` makes them at inference
(:func:`region_crops` calls the same box and crop functions with the same margin and background).
Every crop carries its colour and shape index; "background" crops (regions of the background and
masks that merge two different objects) carry -1 for both.

Captions are drawn from templates and partial descriptions ("red circle", "a photo of a red shape.",
"circle", "background"); each caption carries the colour and shape it names (-1: not named), so the
loss can tell which captions are true for which crops.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from grounded_sam.data import Scene, SceneConfig, make_scene, scene_seed
from grounded_sam.ops import mask_ious, masks_to_boxes
from grounded_sam.text.crops import (
    Background,
    ClipInput,
    expand_boxes,
    image_to_tensor,
    prepare_crops,
)
from grounded_sam.text.demo_clip import BACKGROUND_PHRASE, DEMO_CLIP_TEMPLATES
from grounded_sam.train.prompt_sampling import jitter_boxes

Segmenter = Callable[[np.ndarray, np.ndarray], np.ndarray]
"""(image (H, W, 3) uint8, boxes (N, 4) XYXY) → (N, H, W) bool masks, e.g. SAM's box masks."""

BACKGROUND_ID = -1

FULL_PHRASES = ("{c} {s}", "{c} {s}", "{c} {s} shape", "{s} that is {c}", "{c} colored {s}")
COLOR_PHRASES = ("{c} shape", "{c} object", "{c} thing", "{c}", "something {c}", "{c} one")
SHAPE_PHRASES = ("{s}", "{s}", "{s} shape", "{s} of any color")
BACKGROUND_PHRASES = (BACKGROUND_PHRASE, BACKGROUND_PHRASE, "nothing", "empty background", "no object")
TEMPLATES = (
    *DEMO_CLIP_TEMPLATES,
    "{}",
    "{}",
    "a {}",
    "the {}",
    "an image of a {}",
    "a {} on a background",
)
# Share of captions that name the colour and shape, only the colour, only the shape.
CAPTION_KINDS = (0.6, 0.2, 0.2)


@dataclass
class CropBatch:
    """Model inputs with their ground truth.

    Attributes:
        crops: (B, 3, h, w) normalised model inputs.
        colors, shapes: (B,) int64 indices into the scene config's colours and shapes; -1 for background.
    """

    crops: torch.Tensor
    colors: torch.Tensor
    shapes: torch.Tensor


@dataclass
class Captions:
    """Caption texts with what they name: colour / shape index or -1 (not named); ``background`` flags."""

    texts: list[str]
    colors: torch.Tensor
    shapes: torch.Tensor
    background: torch.Tensor


def region_crops(
    image: np.ndarray, masks: np.ndarray, clip_input: ClipInput, margin: float, background: Background
) -> torch.Tensor:
    """(N, 3, h, w) model inputs for (N, H, W) bool non-empty masks, made as the CLIP labeler makes them."""
    height, width = image.shape[:2]
    boxes = expand_boxes(masks_to_boxes(masks), margin, height, width)
    tensor = image_to_tensor(image, torch.device("cpu"))
    return prepare_crops(tensor, torch.from_numpy(boxes), clip_input, torch.from_numpy(masks), background)


def perturb_mask(mask: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A mask as an imperfect segmenter might return it: smoothed at low resolution, grown / shrunk, or
    cut by a straight line that keeps most (70-95 %) of it.

    Falls back to ``mask`` when the change would empty it or more than double it.
    """
    tensor = torch.from_numpy(mask)[None, None].float()
    kind = rng.choice(["smooth", "smooth", "cut", "grow", "shrink"])
    if kind == "smooth":
        factor = int(rng.choice([2, 4]))
        low = F.avg_pool2d(tensor, factor, ceil_mode=True)
        smooth = F.interpolate(low, size=mask.shape, mode="bilinear", align_corners=False)
        out = (smooth > rng.uniform(0.35, 0.65))[0, 0].numpy()
    elif kind == "cut":
        out = _cut(mask, rng.uniform(0.7, 0.95), rng.uniform(0, 2 * np.pi))
    elif kind == "grow":
        out = (F.max_pool2d(tensor, 3, stride=1, padding=1) > 0.5)[0, 0].numpy()
    else:
        out = (F.max_pool2d(1 - tensor, 3, stride=1, padding=1) < 0.5)[0, 0].numpy()
    area, new_area = mask.sum(), out.sum()
    return out if 0 < new_area <= 2 * area else mask


def _cut(mask: np.ndarray, keep: float, angle: float) -> np.ndarray:
    """``mask`` without the pixels beyond a line at ``angle``, placed so that about ``keep`` of it stays."""
    ys, xs = np.nonzero(mask)
    if len(ys) == 0:
        return mask
    along = np.cos(angle) * xs + np.sin(angle) * ys
    limit = np.quantile(along, keep)
    out = np.zeros_like(mask)
    inside = along <= limit
    out[ys[inside], xs[inside]] = True
    return out


def relight(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The image under random lighting (gain, linear ramp, soft highlight), sometimes slightly blurred."""
    height, width = image.shape[:2]
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    ys, xs = ys / height - 0.5, xs / width - 0.5
    angle = rng.uniform(0, 2 * np.pi)
    ramp = rng.uniform(-0.15, 0.15) * (np.cos(angle) * xs + np.sin(angle) * ys) * 2
    cy, cx, radius = rng.uniform(-0.5, 0.5), rng.uniform(-0.5, 0.5), rng.uniform(0.1, 0.4)
    highlight = rng.uniform(0, 0.25) * np.exp(-((ys - cy) ** 2 + (xs - cx) ** 2) / radius**2)
    gain = rng.uniform(0.85, 1.15) * (1 + ramp + highlight)
    out = image.astype(np.float32) * gain[..., None]
    if rng.random() < 0.3:
        out = _blur(out)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def _blur(image: np.ndarray) -> np.ndarray:
    """A [1, 2, 1] / 4 blur along both axes of an (H, W, C) float image (edges repeated)."""
    for axis in (0, 1):
        padded = np.pad(image, [(1, 1) if a == axis else (0, 0) for a in range(3)], mode="edge")
        lo, mid, hi = (np.take(padded, range(k, k + image.shape[axis]), axis=axis) for k in (0, 1, 2))
        image = 0.25 * lo + 0.5 * mid + 0.25 * hi
    return image


def sam_segmenter(weights: str | os.PathLike[str] | None = None) -> Segmenter:
    """Box masks of the demo SAM (``weights``, default the shipped file) for :func:`scene_batch`."""
    from grounded_sam.sam.build import build_sam
    from grounded_sam.sam.predictor import SamPredictor

    predictor = SamPredictor(build_sam("demo_sam", checkpoint=weights, device="cpu"))

    def segment(image: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        predictor.set_image(image)
        return predictor.predict_boxes(boxes)[0][:, 0]

    return segment


def segmented_masks(scene: Scene, segment: Segmenter, rng: np.random.Generator) -> list[np.ndarray]:
    """The masks a segmenter draws from slightly wrong boxes of the scene's instances, as the demo's text
    stage gets them at inference; an instance whose mask overlaps its own by less than half keeps its
    ground-truth mask."""
    boxes = jitter_boxes(scene.boxes, rng, scene.image.shape[:2], noise=0.05, max_shift=8.0)
    drawn = segment(scene.image, boxes)
    good = mask_ious(drawn, scene.masks) >= 0.5
    return [d if ok else m for d, m, ok in zip(drawn, scene.masks, good, strict=True)]


def background_masks(
    scene: Scene, count: int, rng: np.random.Generator, min_pixels: int = 48
) -> list[np.ndarray]:
    """Up to ``count`` masks that are not one whole object: background regions or two merged objects."""
    height, width = scene.image.shape[:2]
    free = ~scene.masks.any(axis=0)
    found: list[np.ndarray] = []
    for _ in range(4 * count):
        if len(found) == count:
            break
        kind = rng.choice(["rest", "region", "region", "merged"])
        if kind == "merged":
            pairs = [
                (i, j)
                for i in range(len(scene))
                for j in range(i + 1, len(scene))
                if scene.labels[i] != scene.labels[j]
            ]
            if not pairs:
                continue
            i, j = pairs[rng.integers(len(pairs))]
            mask = scene.masks[i] | scene.masks[j]
        elif kind == "rest":
            mask = free.copy()
        else:
            box_h, box_w = (rng.uniform(0.15, 0.6, 2) * (height, width)).astype(int) + 1
            y0, x0 = rng.integers(0, height - box_h + 1), rng.integers(0, width - box_w + 1)
            mask = np.zeros_like(free)
            mask[y0 : y0 + box_h, x0 : x0 + box_w] = True
            if rng.random() < 0.5:  # an irregular blob instead of the whole box
                blob = torch.from_numpy(rng.random((1, 1, 5, 5), dtype=np.float32))
                blob = F.interpolate(
                    blob, size=(int(box_h), int(box_w)), mode="bilinear", align_corners=False
                )
                mask[y0 : y0 + box_h, x0 : x0 + box_w] = blob[0, 0].numpy() > 0.45
            mask &= free
        if mask.sum() >= min_pixels:
            found.append(mask)
    return found


def scene_batch(
    scenes: Sequence[Scene],
    colors: Sequence[str],
    shapes: Sequence[str],
    clip_input: ClipInput,
    margin: float,
    background: Background,
    rng: np.random.Generator,
    negatives_per_scene: int = 1,
    perturb_prob: float = 0.5,
    augment: bool = True,
    segment: Segmenter | None = None,
    segment_prob: float = 0.0,
) -> CropBatch:
    """Crops of every instance of ``scenes`` plus background crops, with their colour / shape indices.

    With ``segment``, a share ``segment_prob`` of the scenes show their instances through the
    segmenter's masks (:func:`segmented_masks`) instead of perturbed ground truth.
    """
    crops, color_ids, shape_ids = [], [], []
    for scene in scenes:
        image = relight(scene.image, rng) if augment else scene.image
        if segment is not None and len(scene) and rng.random() < segment_prob:
            masks = segmented_masks(scene, segment, rng)
        else:
            masks = [
                perturb_mask(m, rng) if augment and rng.random() < perturb_prob else m for m in scene.masks
            ]
        negatives = background_masks(scene, negatives_per_scene, rng)
        stack = np.stack([*masks, *negatives]) if masks or negatives else None
        if stack is None:
            continue
        crops.append(region_crops(image, stack, clip_input, margin, background))
        color_ids += [colors.index(c) for c in scene.colors] + [BACKGROUND_ID] * len(negatives)
        shape_ids += [shapes.index(s) for s in scene.shapes] + [BACKGROUND_ID] * len(negatives)
    return CropBatch(
        torch.cat(crops) if crops else torch.zeros((0, 3, *clip_input.size)),
        torch.tensor(color_ids, dtype=torch.int64),
        torch.tensor(shape_ids, dtype=torch.int64),
    )


def sample_captions(
    batch: CropBatch, colors: Sequence[str], shapes: Sequence[str], rng: np.random.Generator
) -> Captions:
    """One random caption per crop of ``batch``, true for it (full, colour-only or shape-only)."""
    texts, named_colors, named_shapes, flags = [], [], [], []
    for color, shape in zip(batch.colors.tolist(), batch.shapes.tolist(), strict=True):
        if color == BACKGROUND_ID:
            phrase, named = BACKGROUND_PHRASES[rng.integers(len(BACKGROUND_PHRASES))], (-1, -1)
        else:
            kind = rng.choice(3, p=CAPTION_KINDS)
            table = (FULL_PHRASES, COLOR_PHRASES, SHAPE_PHRASES)[kind]
            phrase = table[rng.integers(len(table))].format(c=colors[color], s=shapes[shape])
            named = ((color, shape), (color, -1), (-1, shape))[kind]
        texts.append(TEMPLATES[rng.integers(len(TEMPLATES))].format(phrase))
        named_colors.append(named[0])
        named_shapes.append(named[1])
        flags.append(color == BACKGROUND_ID)
    return Captions(texts, torch.tensor(named_colors), torch.tensor(named_shapes), torch.tensor(flags))


def caption_matches(batch: CropBatch, captions: Captions) -> torch.Tensor:
    """(B, T) bool: caption t is a true description of crop b."""
    crop_background = batch.colors[:, None] == BACKGROUND_ID
    color_ok = (captions.colors[None] == -1) | (captions.colors[None] == batch.colors[:, None])
    shape_ok = (captions.shapes[None] == -1) | (captions.shapes[None] == batch.shapes[:, None])
    objects = ~crop_background & ~captions.background[None] & color_ok & shape_ok
    return objects | (crop_background & captions.background[None])


@dataclass
class StepData(torch.utils.data.Dataset):
    """The training data of each step: its scenes' crops and their captions, fixed by ``(seed, step)``.

    Item ``i`` is step ``first + i``, so a resumed run draws what the uninterrupted run would have. A
    ``DataLoader`` worker can make the next steps' data while the model trains on this one; the
    segmenter is built by ``segmenter()`` on first use, in the process that uses it.

    Attributes:
        seed, first, last: the run seed and the 0-based steps ``first .. last - 1``.
        scenes_per_step, scenes: how many scenes each step draws, and how.
        clip_input, margin, background: how crops are made (as the labeler makes them).
        negatives_per_scene, sam_masks: background crops per scene; share of scenes seen through SAM.
        segmenter: makes the segmenter of the ``sam_masks`` scenes (None: ground truth only).
    """

    seed: int
    first: int
    last: int
    scenes_per_step: int
    scenes: SceneConfig
    clip_input: ClipInput
    margin: float
    background: Background
    negatives_per_scene: int = 1
    sam_masks: float = 0.0
    segmenter: Callable[[], Segmenter] | None = None
    _segment: Segmenter | None = field(default=None, init=False, repr=False)

    def __len__(self) -> int:
        return max(self.last - self.first, 0)

    def __getitem__(self, index: int) -> tuple[CropBatch, Captions]:
        if not 0 <= index < len(self):
            raise IndexError(index)
        step = self.first + index
        rng = np.random.default_rng([self.seed, step])
        start = step * self.scenes_per_step
        scenes = [
            make_scene(scene_seed(self.seed, start + i), self.scenes) for i in range(self.scenes_per_step)
        ]
        if self._segment is None and self.segmenter is not None and self.sam_masks > 0:
            self._segment = self.segmenter()
        batch = scene_batch(
            scenes,
            self.scenes.colors,
            self.scenes.shapes,
            self.clip_input,
            self.margin,
            self.background,
            rng,
            self.negatives_per_scene,
            segment=self._segment,
            segment_prob=self.sam_masks,
        )
        return batch, sample_captions(batch, self.scenes.colors, self.scenes.shapes, rng)
