"""Synthetic inputs for video tests and benchmarks: shapes moving over a background, with ground truth,
and a tiny randomly initialised SAM 2 video model.

Shapes are drawn with the scene generator's exact rasteriser (:mod:`grounded_sam.data.shapes`), so each
frame's masks are exactly the painted pixels. Frames are produced lazily, one at a time.

Example::

    shapes = random_moving_shapes(3, size=(64, 64), seed=0)
    for frame in render_moving_shapes(shapes, num_frames=100, size=(64, 64)):
        frame.image, frame.masks, frame.object_ids  # (64, 64, 3) uint8, (N, 64, 64) bool, (N,) int64
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from grounded_sam.data import COLORS, DEFAULT_COLORS, SHAPE_NAMES, render_background
from grounded_sam.data.shapes import Placement, clip_window, rasterize
from grounded_sam.ops.boxes import masks_to_boxes
from grounded_sam.text.base import Detections


@dataclass(frozen=True)
class MovingShape:
    """One object of a synthetic video: a shape moving in a straight line and bouncing off the edges.

    Attributes:
        shape, color: one of ``SHAPE_NAMES`` and of ``COLORS``; the label is "color shape".
        center: (cx, cy) in pixels on frame ``enter``.
        velocity: (vx, vy) in pixels per frame.
        radius: circumscribed radius in pixels; the centre bounces so the shape stays inside the frame.
        spin: rotation in radians per frame.
        enter: first frame showing the shape; ``leave``: first frame without it (``None``: never leaves).
    """

    shape: str
    color: str
    center: tuple[float, float]
    velocity: tuple[float, float]
    radius: float
    spin: float = 0.0
    enter: int = 0
    leave: int | None = None

    def __post_init__(self) -> None:
        if self.shape not in SHAPE_NAMES:
            raise ValueError(f"unknown shape {self.shape!r}; choose from {SHAPE_NAMES}")
        if self.color not in COLORS:
            raise ValueError(f"unknown color {self.color!r}; choose from {tuple(COLORS)}")
        if self.radius <= 0:
            raise ValueError(f"radius must be positive; got {self.radius}")

    @property
    def label(self) -> str:
        return f"{self.color} {self.shape}"

    def visible_on(self, frame: int) -> bool:
        return frame >= self.enter and (self.leave is None or frame < self.leave)

    def placement(self, frame: int, size: tuple[int, int]) -> Placement:
        """Where the shape is on ``frame`` of a video of ``size`` (H, W)."""
        t = frame - self.enter
        h, w = size
        cx = _bounce(self.center[0] + self.velocity[0] * t, self.radius, w - self.radius)
        cy = _bounce(self.center[1] + self.velocity[1] * t, self.radius, h - self.radius)
        return Placement(self.shape, cx, cy, self.radius, angle=self.spin * t)


@dataclass(frozen=True, eq=False)
class SyntheticFrame:
    """One rendered frame and its ground truth (visible parts; a fully hidden object is left out).

    Attributes:
        image: (H, W, 3) uint8 RGB.
        masks: (N, H, W) bool visible pixels, disjoint (later shapes are drawn on top).
        boxes: (N, 4) float32 XYXY of the masks, x2 / y2 exclusive.
        object_ids: (N,) int64 index of each object in the list of shapes rendered.
        labels: N "color shape" strings.
    """

    image: np.ndarray
    masks: np.ndarray
    boxes: np.ndarray
    object_ids: np.ndarray
    labels: list[str]


def _bounce(x: float, lo: float, hi: float) -> float:
    """``x`` folded into [lo, hi] as a point bouncing between two walls."""
    if hi <= lo:
        return (lo + hi) / 2
    period = 2 * (hi - lo)
    u = (x - lo) % period
    return lo + (u if u <= hi - lo else period - u)


def random_moving_shapes(
    n: int, size: tuple[int, int] = (64, 64), seed: int = 0, *, max_speed: float = 2.0
) -> tuple[MovingShape, ...]:
    """``n`` shapes of distinct colours (up to 8) with random positions, speeds up to ``max_speed`` px/frame
    and radii of 10-20 % of the smaller side, all visible from frame 0."""
    rng = np.random.default_rng(seed)
    h, w = size
    shapes = []
    for i in range(n):
        radius = float(rng.uniform(0.1, 0.2) * min(h, w))
        angle = rng.uniform(0, 2 * math.pi)
        speed = rng.uniform(0.3, 1.0) * max_speed
        shapes.append(
            MovingShape(
                shape=SHAPE_NAMES[int(rng.integers(len(SHAPE_NAMES)))],
                color=DEFAULT_COLORS[i % len(DEFAULT_COLORS)],
                center=(float(rng.uniform(radius, w - radius)), float(rng.uniform(radius, h - radius))),
                velocity=(speed * math.cos(angle), speed * math.sin(angle)),
                radius=radius,
                spin=float(rng.uniform(-0.05, 0.05)),
            )
        )
    return tuple(shapes)


def render_moving_shapes(
    shapes: Sequence[MovingShape],
    num_frames: int,
    size: tuple[int, int] = (64, 64),
    *,
    background: str = "flat",
    seed: int = 0,
) -> Iterator[SyntheticFrame]:
    """Yield ``num_frames`` frames of ``shapes`` over one fixed background (a kind of ``BACKGROUND_KINDS``).

    Shapes are painted in their exact base colour, so :class:`ColorDetector` finds them.
    """
    h, w = size
    backdrop = np.rint(render_background(background, np.random.default_rng(seed), h, w)).astype(np.uint8)
    for frame in range(num_frames):
        yield render_frame(shapes, frame, backdrop)


def render_frame(shapes: Sequence[MovingShape], frame: int, backdrop: np.ndarray) -> SyntheticFrame:
    """Frame number ``frame`` of ``shapes`` drawn over ``backdrop``, an (H, W, 3) uint8 image."""
    h, w = backdrop.shape[:2]
    image = backdrop.copy()
    owner = np.full((h, w), -1, dtype=np.int32)
    for obj, moving in enumerate(shapes):
        if not moving.visible_on(frame):
            continue
        mask, y0, x0 = rasterize(moving.placement(frame, (h, w)))
        ys, xs, window = clip_window(mask, y0, x0, h, w)
        image[ys, xs][window] = COLORS[moving.color]
        owner[ys, xs][window] = obj
    ids = np.array([i for i in range(len(shapes)) if (owner == i).any()], dtype=np.int64)
    masks = owner[None] == ids[:, None, None].astype(np.int32)
    return SyntheticFrame(image, masks, masks_to_boxes(masks), ids, [shapes[i].label for i in ids])


class ColorDetector:
    """A :class:`~grounded_sam.text.base.Detector` for synthetic videos: a phrase that is a shape's label
    ("red circle") is found as the box of the pixels painted exactly in that shape's colour (score 1)."""

    def __init__(self, shapes: Sequence[MovingShape]) -> None:
        self.colors = {moving.label: COLORS[moving.color] for moving in shapes}

    def detect(
        self,
        image: np.ndarray,
        phrases: Sequence[str],
        *,
        box_threshold: float | None = None,
        text_threshold: float | None = None,
    ) -> Detections:
        boxes, phrase_ids = [], []
        for i, phrase in enumerate(phrases):
            if phrase not in self.colors:
                continue
            mask = (image == np.asarray(self.colors[phrase], dtype=np.uint8)).all(axis=-1)
            if mask.any():
                boxes.append(masks_to_boxes(mask[None])[0])
                phrase_ids.append(i)
        return Detections(np.array(boxes).reshape(-1, 4), np.ones(len(boxes)), phrase_ids, tuple(phrases))


class OracleVideoModel:
    """Wraps a SAM 2 video model for tests and benchmarks with random weights.

    Each call runs the real model (so the session evolves and the compute is real), then replaces its mask
    logits by the ground truth of the object each track was prompted on: the shape whose box best overlaps
    the track's box prompt. Everything else (``config``, ``parameters()``, ...) is the wrapped model's.
    """

    def __init__(self, model: Any, shapes: Sequence[MovingShape], size: tuple[int, int]) -> None:
        self.model = model
        self.shapes = tuple(shapes)
        self.size = size
        self.assigned: dict[int, int] = {}  # track id -> index in shapes

    def __getattr__(self, name: str) -> Any:
        return getattr(self.model, name)

    def to(self, device: Any) -> OracleVideoModel:
        self.model.to(device)
        return self

    def __call__(self, *, inference_session: Any, frame_idx: int, **kwargs: Any) -> Any:
        import torch

        truth = render_frame(self.shapes, frame_idx, np.zeros((*self.size, 3), dtype=np.uint8))
        self._assign_prompted(inference_session, frame_idx, truth)
        output = self.model(inference_session=inference_session, frame_idx=frame_idx, **kwargs)
        low_res = output.pred_masks.shape[-2:]
        masks = np.zeros((len(output.object_ids), *self.size), dtype=np.float32)
        for row, obj_id in enumerate(output.object_ids):
            hits = np.flatnonzero(truth.object_ids == self.assigned.get(obj_id, -1))
            if hits.size:
                masks[row] = truth.masks[hits[0]]
        coverage = torch.nn.functional.interpolate(
            torch.from_numpy(masks)[:, None], size=low_res, mode="area"
        )
        output.pred_masks = (coverage - 0.5) * 40.0
        return output

    def _assign_prompted(self, session: Any, frame_idx: int, truth: SyntheticFrame) -> None:
        from grounded_sam.ops.boxes import box_ious

        h, w = self.size
        for obj_id in session.obj_ids:
            prompt = session.point_inputs_per_obj[session.obj_id_to_idx(obj_id)].get(frame_idx)
            if prompt is None or obj_id in self.assigned or not len(truth.boxes):
                continue
            corners = prompt["point_coords"][0, 0, :2].reshape(4).cpu().numpy().astype(np.float64)
            box = corners * np.array([w, h, w, h]) / self.model.config.image_size
            self.assigned[obj_id] = int(truth.object_ids[box_ious(box, truth.boxes)[0].argmax()])


def tiny_sam2_video(image_size: int = 64, seed: int = 0, **config: Any) -> tuple[Any, Any]:
    """A randomly initialised ``Sam2VideoModel`` (about 1.3 M parameters) and a matching processor.

    For tests and benchmarks of the tracking machinery: the masks are meaningless. ``image_size`` must be a
    multiple of 32 (at least 64); ``config`` overrides ``Sam2VideoConfig`` fields (e.g. ``num_maskmem``).
    """
    import torch
    from transformers import Sam2VideoConfig, Sam2VideoModel, Sam2VideoProcessor
    from transformers.models.sam2.image_processing_sam2 import Sam2ImageProcessor
    from transformers.models.sam2_video.video_processing_sam2_video import Sam2VideoVideoProcessor

    if image_size < 64 or image_size % 32:
        raise ValueError(f"image_size must be a multiple of 32, at least 64; got {image_size}")
    s = image_size
    # The memory attention's cross-attention reads 64-channel memories (fixed in transformers), and the
    # object pointers are split into hidden / 64 tokens, so hidden sizes are 128 and memories 64 wide.
    vision = {
        "model_type": "sam2_vision_model",
        "backbone_config": {
            "model_type": "sam2_hiera_det_model",
            "hidden_size": 16,
            "image_size": [s, s],
            "blocks_per_stage": [1, 1, 2, 1],
            "embed_dim_per_stage": [16, 32, 64, 128],
            "num_attention_heads_per_stage": [1, 1, 1, 1],
            "window_size_per_stage": [4, 4, 4, 4],
            "global_attention_blocks": [3],
            "window_positional_embedding_background_size": [2, 2],
        },
        "backbone_channel_list": [128, 64, 32, 16],
        "backbone_feature_sizes": [[s // 4, s // 4], [s // 8, s // 8], [s // 16, s // 16]],
        "fpn_hidden_size": 128,
    }
    settings: dict[str, Any] = {
        "vision_config": vision,
        "prompt_encoder_config": {"hidden_size": 128, "image_size": s, "patch_size": 16},
        "mask_decoder_config": {
            "hidden_size": 128,
            "mlp_dim": 64,
            "num_attention_heads": 2,
            "iou_head_hidden_dim": 32,
        },
        "image_size": s,
        "memory_attention_hidden_size": 128,
        "memory_attention_num_layers": 1,
        "memory_attention_feed_forward_hidden_size": 64,
        "memory_attention_rope_feat_sizes": [s // 16, s // 16],
        "memory_encoder_hidden_size": 128,
        "memory_encoder_output_channels": 64,
        "mask_downsampler_embed_dim": 128,
        "memory_fuser_embed_dim": 128,
        "memory_fuser_intermediate_dim": 64,
    }
    settings.update(config)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = Sam2VideoModel(Sam2VideoConfig(**settings)).eval()
    square = {"height": s, "width": s}
    processor = Sam2VideoProcessor(
        Sam2ImageProcessor(size=square, mask_size={"height": s // 4, "width": s // 4}),
        Sam2VideoVideoProcessor(size=square),
    )
    return model, processor
