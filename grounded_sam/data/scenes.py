"""Seeded synthetic scenes of coloured shapes: training data for the embedded model, fixtures for tests.

Conventions shared by every function here:

* image: (H, W, 3) uint8 RGB.
* masks: (N, H, W) bool, the *visible* part of each instance after occlusion; masks are disjoint.
* boxes: (N, 4) float32 XYXY in pixel-edge coordinates with exclusive x2 / y2: an instance whose
  pixels span columns 3..7 and rows 10..12 has the box (3, 10, 8, 13), so x2 - x1 is its width.
* instances are listed in paint order: later instances are painted over earlier ones.
* labels are "<colour> <shape>", e.g. "red circle"; `shapes` and `colors` hold the two words.
* a seed fixes everything: same seed and config -> the same image and annotations.

Every painted object is annotated: candidates that would end up less visible than the configured
minimum are removed before anything is painted, so no unlabelled fragments remain in the image.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

from grounded_sam.data.backgrounds import BACKGROUND_KINDS, render_background
from grounded_sam.data.shapes import (
    COLORS,
    DEFAULT_COLORS,
    SHAPE_NAMES,
    Placement,
    centre_offsets,
    clip_window,
    coverage,
    rasterize,
    sample_placement,
)
from grounded_sam.ops.boxes import masks_to_boxes

logger = logging.getLogger(__name__)

MIN_SIDE = 32
"""Smallest image side a `SceneConfig` accepts, in pixels."""

MIN_SHAPE_DIAMETER = 6.0
"""Smallest shape diameter (the lower end of `SceneConfig.size_range`), in pixels."""


@dataclass(frozen=True)
class SceneConfig:
    """How scenes are drawn. Lists are stored as tuples; invalid values raise ValueError.

    Attributes:
        size: (H, W) of the image in pixels, each at least `MIN_SIDE`.
        min_objects, max_objects: range of the number of instances (both ends included). The lower
            end is best effort: a crowded configuration can end with fewer visible instances.
        shapes: shape names, a subset of `SHAPE_NAMES`.
        colors: colour names, a subset of `shapes.COLORS` (default: the eight `DEFAULT_COLORS`).
        backgrounds: background kinds, a subset of `BACKGROUND_KINDS`.
        size_range: (low, high) diameter of a shape's circumscribed circle as a fraction of min(H, W),
            sampled log-uniformly.
        min_visible_fraction: instances whose visible area is below this fraction of their full area
            (occluded or cut by the image edge) are removed.
        min_visible_pixels: instances with fewer visible pixels are removed.
        color_jitter: maximum per-channel offset added to an instance's base colour (0-255 scale).
        shading: maximum relative brightness change across an instance (linear ramp).
        pixel_noise: maximum standard deviation of per-pixel noise on each instance.
        image_noise: maximum standard deviation of grey per-pixel noise over the finished image.
        min_contrast: preferred minimum RGB distance between an instance's colour and the mean of the
            background under it; colours closer than this are avoided when another colour is allowed.
    """

    size: tuple[int, int] = (256, 256)
    min_objects: int = 1
    max_objects: int = 6
    shapes: tuple[str, ...] = SHAPE_NAMES
    colors: tuple[str, ...] = DEFAULT_COLORS
    backgrounds: tuple[str, ...] = BACKGROUND_KINDS
    size_range: tuple[float, float] = (0.12, 0.45)
    min_visible_fraction: float = 0.3
    min_visible_pixels: int = 16
    color_jitter: float = 12.0
    shading: float = 0.08
    pixel_noise: float = 4.0
    image_noise: float = 2.0
    min_contrast: float = 60.0

    def __post_init__(self) -> None:
        for name in ("size", "shapes", "colors", "backgrounds", "size_range"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        if len(self.size) != 2 or min(self.size) < MIN_SIDE or any(int(v) != v for v in self.size):
            raise ValueError(
                f"size must be two integers (H, W) of at least {MIN_SIDE} pixels; got {self.size}"
            )
        h, w = int(self.size[0]), int(self.size[1])
        object.__setattr__(self, "size", (h, w))
        counts = (self.min_objects, self.max_objects, self.min_visible_pixels)
        if any(isinstance(v, bool) or not isinstance(v, (int, np.integer)) for v in counts):
            raise TypeError(f"min_objects, max_objects and min_visible_pixels must be ints; got {counts}")
        if not 0 <= self.min_objects <= self.max_objects:
            raise ValueError(
                f"need 0 <= min_objects <= max_objects; got min_objects={self.min_objects}, "
                f"max_objects={self.max_objects}"
            )
        _check_names(self.shapes, SHAPE_NAMES, "shapes")
        _check_names(self.colors, tuple(COLORS), "colors")
        _check_names(self.backgrounds, BACKGROUND_KINDS, "backgrounds")
        if len(self.size_range) != 2 or not 0 < self.size_range[0] <= self.size_range[1] <= 1:
            raise ValueError(
                f"size_range must be (low, high) with 0 < low <= high <= 1; got {self.size_range}"
            )
        lo = self.size_range[0]
        if lo * min(h, w) < MIN_SHAPE_DIAMETER:
            raise ValueError(
                f"shapes too small: size_range low {lo} x min side {min(h, w)} gives a "
                f"{lo * min(h, w):.1f}-pixel shape; raise size_range[0] or the image size to reach "
                f"{MIN_SHAPE_DIAMETER} pixels"
            )
        if not 0 <= self.min_visible_fraction <= 1 or self.min_visible_pixels < 1:
            raise ValueError(
                "need 0 <= min_visible_fraction <= 1 and min_visible_pixels >= 1; got "
                f"{self.min_visible_fraction} and {self.min_visible_pixels}"
            )
        amounts = ("color_jitter", "shading", "pixel_noise", "image_noise", "min_contrast")
        negative = [n for n in amounts if getattr(self, n) < 0]
        if negative or self.shading >= 1:
            raise ValueError(f"{', '.join(negative) or 'shading'} out of range: must be >= 0 (shading < 1)")


def _check_names(names: tuple[str, ...], known: tuple[str, ...], what: str) -> None:
    if not names:
        raise ValueError(f"{what} is empty; give at least one of {known}")
    unknown = [n for n in names if n not in known]
    if unknown or len(set(names)) != len(names):
        raise ValueError(f"{what} must be distinct names from {known}; got {names}")


@dataclass(eq=False)
class Scene:
    """One synthetic image with its ground truth (see the module docstring for the conventions).

    Attributes:
        image: (H, W, 3) uint8 RGB.
        masks: (N, H, W) bool visible instance masks, disjoint.
        boxes: (N, 4) float32 XYXY, x2 / y2 exclusive.
        labels, shapes, colors: N strings each; labels[i] == f"{colors[i]} {shapes[i]}".
        background: the background kind.
        seed: the seed that regenerates this scene with the same config (None if unknown).
    """

    image: np.ndarray
    masks: np.ndarray
    boxes: np.ndarray
    labels: list[str]
    shapes: list[str]
    colors: list[str]
    background: str = "unknown"
    seed: int | None = None

    def __post_init__(self) -> None:
        if self.image.ndim != 3 or self.image.shape[2] != 3 or self.image.dtype != np.uint8:
            raise ValueError(f"image must be (H, W, 3) uint8; got {self.image.shape} {self.image.dtype}")
        h, w = self.image.shape[:2]
        n = len(self.labels)
        if self.masks.shape != (n, h, w) or self.masks.dtype != bool:
            raise ValueError(f"masks must be ({n}, {h}, {w}) bool; got {self.masks.shape} {self.masks.dtype}")
        if self.boxes.shape != (n, 4) or self.boxes.dtype != np.float32:
            raise ValueError(f"boxes must be ({n}, 4) float32; got {self.boxes.shape} {self.boxes.dtype}")
        if len(self.shapes) != n or len(self.colors) != n:
            raise ValueError(f"labels, shapes and colors must all have {n} entries")

    def __len__(self) -> int:
        return len(self.labels)


def all_class_names(config: SceneConfig | None = None) -> list[str]:
    """Every label a config can produce, shape-major: ["red circle", "green circle", ..., "black cross"]."""
    config = config or SceneConfig()
    return [f"{color} {shape}" for shape in config.shapes for color in config.colors]


def scene_seed(seed: int, index: int) -> int:
    """Seed of scene `index` in the stream `seed` (what `iter_scenes` uses); below 2**53, exact in JSON."""
    a, b = np.random.SeedSequence([check_seed(seed), check_seed(index)]).generate_state(2, np.uint32)
    return (int(a) << 21) | (int(b) >> 11)


def check_seed(seed: int) -> int:
    """``seed`` as an int; TypeError/ValueError for non-integers and negatives."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"seed must be an int; got {type(seed).__name__}")
    if seed < 0:
        raise ValueError(f"seed must be >= 0; got {seed}")
    return int(seed)


@dataclass(eq=False)
class PlacedInstance:
    """A placed, coloured candidate: its footprint mask over the unclipped window at (y0, x0)."""

    placement: Placement
    color: str
    mask: np.ndarray
    y0: int
    x0: int
    area: int = field(init=False)
    alpha: np.ndarray | None = None  # anti-aliased coverage, only for the Pillow renderer

    def __post_init__(self) -> None:
        self.area = max(int(self.mask.sum()), 1)


def _owner_map(instances: list[PlacedInstance], h: int, w: int) -> np.ndarray:
    """(H, W) int16: index of the top-most instance at each pixel, -1 for background."""
    owner = np.full((h, w), -1, dtype=np.int16)
    for i, inst in enumerate(instances):
        ys, xs, m = clip_window(inst.mask, inst.y0, inst.x0, h, w)
        owner[ys, xs][m] = i
    return owner


def _drop_hidden(instances: list[PlacedInstance], config: SceneConfig) -> list[PlacedInstance]:
    """Remove the least visible failing instance until every one passes the visibility limits.

    Removing an instance only uncovers the others, so one removal at a time keeps as many as possible.
    """
    h, w = config.size
    while instances:
        owner = _owner_map(instances, h, w)
        visible = np.bincount(owner.ravel() + 1, minlength=len(instances) + 1)[1:]
        fraction = visible / np.array([inst.area for inst in instances])
        failing = (visible < config.min_visible_pixels) | (fraction < config.min_visible_fraction)
        if not failing.any():
            break
        worst = int(np.argmin(np.where(failing, fraction, np.inf)))
        instances = instances[:worst] + instances[worst + 1 :]
    return instances


def _choose_color(
    rng: np.random.Generator,
    config: SceneConfig,
    p: Placement,
    background: np.ndarray,
    placed: list[PlacedInstance],
) -> str:
    """A colour with enough contrast to the background under `p` that no overlapping instance has."""
    h, w = config.size
    y0, y1, x0, x1 = p.window()
    local = background[max(y0, 0) : min(y1, h), max(x0, 0) : min(x1, w)].reshape(-1, 3).mean(axis=0)
    rgb = np.array([COLORS[c] for c in config.colors], dtype=np.float32)
    contrast = np.sqrt(((rgb - local) ** 2).sum(axis=1))
    taken = {
        inst.color
        for inst in placed
        if math.hypot(inst.placement.cx - p.cx, inst.placement.cy - p.cy) < inst.placement.radius + p.radius
    }
    free = np.array([c not in taken for c in config.colors])
    good = np.flatnonzero(free & (contrast >= config.min_contrast))
    if len(good):
        return config.colors[good[rng.integers(len(good))]]
    pool = free if free.any() else np.ones_like(free)
    return config.colors[int(np.argmax(np.where(pool, contrast, -1.0)))]


def place_instances(
    rng: np.random.Generator, config: SceneConfig, background: np.ndarray, soft: bool
) -> list[PlacedInstance]:
    """Sample candidates, top up after visibility filtering, until the drawn target count is reached.

    Footprints are exact pixel-centre masks, or with `soft` the anti-aliased coverage (kept as `alpha`)
    thresholded at one half.
    """
    target = int(rng.integers(config.min_objects, config.max_objects + 1))
    budget = 3 * target + 4  # candidates tried before settling for fewer instances
    kept: list[PlacedInstance] = []
    while len(kept) < target and budget > 0:
        batch = min(target - len(kept), budget)
        budget -= batch
        for _ in range(batch):
            p = sample_placement(rng, config.shapes, config.size, config.size_range)
            alpha: np.ndarray | None = None
            if soft:
                alpha, y0, x0 = coverage(p)
                mask = alpha >= 0.5
            else:
                mask, y0, x0 = rasterize(p)
            kept.append(
                PlacedInstance(p, _choose_color(rng, config, p, background, kept), mask, y0, x0, alpha=alpha)
            )
        kept = _drop_hidden(kept, config)
    if len(kept) < target:
        logger.debug("scene settled for %d of %d instances (crowded configuration)", len(kept), target)
    return kept


def _paint_exact(
    image: np.ndarray, inst: PlacedInstance, rng: np.random.Generator, config: SceneConfig
) -> None:
    """Paint the instance's footprint with its jittered, shaded, noisy colour (in place, float image)."""
    h, w = config.size
    ys, xs, m = clip_window(inst.mask, inst.y0, inst.x0, h, w)
    jitter = rng.uniform(-config.color_jitter, config.color_jitter, 3)
    base = (np.asarray(COLORS[inst.color]) + jitter).astype(np.float32)
    strength, direction = rng.uniform(0, config.shading), rng.uniform(0, 2 * math.pi)
    dy, dx = centre_offsets(inst.placement, ys, xs)
    ramp = (dx * math.cos(direction) + dy * math.sin(direction)) / inst.placement.radius
    gain = 1 + np.float32(strength) * ramp
    pixels = base * gain[m][:, None]
    sigma = np.float32(rng.uniform(0, config.pixel_noise))
    pixels += rng.standard_normal(pixels.shape, dtype=np.float32) * sigma
    image[ys, xs][m] = pixels


def finish_scene(
    image: np.ndarray, masks: np.ndarray, instances: list[PlacedInstance], background: str, seed: int
) -> Scene:
    shapes = [inst.placement.shape for inst in instances]
    colors = [inst.color for inst in instances]
    return Scene(
        image=np.rint(np.clip(image, 0, 255)).astype(np.uint8),
        masks=masks,
        boxes=masks_to_boxes(masks),
        labels=[f"{c} {s}" for c, s in zip(colors, shapes, strict=True)],
        shapes=shapes,
        colors=colors,
        background=background,
        seed=seed,
    )


def add_image_noise(image: np.ndarray, rng: np.random.Generator, max_sigma: float) -> None:
    """Sensor-like grain, the same on the three channels (one draw per pixel keeps it cheap)."""
    sigma = np.float32(rng.uniform(0, max_sigma))
    image += rng.standard_normal((*image.shape[:2], 1), dtype=np.float32) * sigma


def make_scene(seed: int, config: SceneConfig = SceneConfig()) -> Scene:
    """Draw one scene: background, then shapes painted in order with exact, anti-aliasing-free masks.

    Example::

        scene = make_scene(0, SceneConfig(size=(128, 128), max_objects=3))
        scene.image.shape, scene.masks.shape, scene.labels   # (128, 128, 3), (N, 128, 128), ["red star", ...]
    """
    rng = np.random.default_rng(check_seed(seed))
    h, w = config.size
    kind = config.backgrounds[rng.integers(len(config.backgrounds))]
    image = render_background(kind, rng, h, w)
    instances = place_instances(rng, config, image, soft=False)
    for inst in instances:
        _paint_exact(image, inst, rng, config)
    add_image_noise(image, rng, config.image_noise)
    owner = _owner_map(instances, h, w)
    masks = owner[None] == np.arange(len(instances), dtype=np.int16)[:, None, None]
    return finish_scene(image, masks, instances, kind, int(seed))


def iter_scenes(seed: int, n: int, config: SceneConfig = SceneConfig(), start: int = 0) -> Iterator[Scene]:
    """Scenes `start` .. `start + n - 1` of the stream `seed`; scene i is `make_scene(scene_seed(seed, i))`.

    Different stream seeds give unrelated scenes (no overlap between e.g. train seed 0 and val seed 1).
    """
    if n < 0 or start < 0:
        raise ValueError(f"n and start must be >= 0; got n={n}, start={start}")
    for i in range(start, start + n):
        yield make_scene(scene_seed(seed, i), config)
