"""`Result`: the columnar, validated output of every pipeline, and the input of every exporter.

One row per instance; all coordinates are in pixels of the input image (after EXIF rotation).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

if TYPE_CHECKING:
    from PIL import Image

    from grounded_sam.export import ExportFormat
    from grounded_sam.io import ImageInput


@dataclass(frozen=True, eq=False)
class Instance:
    """One row of a `Result`: mask (H, W) bool, box (4,) float32 XYXY, label, score, mask_score."""

    mask: np.ndarray
    box: np.ndarray
    label: str
    score: float
    mask_score: float

    @property
    def area(self) -> int:
        """Number of mask pixels."""
        return int(self.mask.sum())

    @property
    def shown_mask_score(self) -> float:
        """``mask_score`` as tables and overlays show it: clipped to [0, 1] (SAM's predicted IoU is a
        regression and can come out slightly above 1; ``mask_score`` keeps the raw value, as the
        reference implementation does)."""
        return min(max(self.mask_score, 0.0), 1.0)


@dataclass(eq=False, repr=False)
class Result:
    """Instances found in one image.

    Attributes:
        masks: (N, H, W) bool.
        boxes: (N, 4) float32, XYXY in input pixels.
        labels: N strings.
        scores: (N,) float32, detector (or labeler) confidence.
        mask_scores: (N,) float32, SAM's predicted IoU of each mask, raw (it can exceed 1 slightly;
            tables and overlays show it clipped to [0, 1], see ``Instance.shown_mask_score``).
        image_size: (H, W) of the input image.
        source: the path of that image when the pipeline was given one (``None`` for arrays); exporters
            use it to name the image (COCO ``file_name``) and to draw the overlay.

    Arrays are coerced on construction: masks from 0/1 integers or floats, the float fields from any
    real dtype (float64 is rounded to float32); anything else raises with the expected and actual shape.

    Example::

        result = Result(masks, boxes, ["cat"], np.array([0.9]), np.array([0.95]), image_size=(480, 640))
        result.filter(min_score=0.5).overlay(image).save("overlay.png")
    """

    masks: np.ndarray
    boxes: np.ndarray
    labels: list[str]
    scores: np.ndarray
    mask_scores: np.ndarray
    image_size: tuple[int, int]
    source: str | None = None

    def __post_init__(self) -> None:
        self.image_size = _check_image_size(self.image_size)
        self.source = None if self.source is None else os.fspath(self.source)
        self.masks = _check_masks(self.masks, self.image_size)
        n = self.masks.shape[0]
        self.boxes = _check_floats(self.boxes, "boxes", (n, 4))
        self.scores = _check_floats(self.scores, "scores", (n,))
        self.mask_scores = _check_floats(self.mask_scores, "mask_scores", (n,))
        self.labels = _check_labels(self.labels, n)

    @classmethod
    def empty(cls, image_size: tuple[int, int], source: str | None = None) -> Result:
        """A result with no instances (N = 0) for an image of (H, W) = `image_size`."""
        h, w = _check_image_size(image_size)
        return cls(
            masks=np.zeros((0, h, w), dtype=bool),
            boxes=np.zeros((0, 4), dtype=np.float32),
            labels=[],
            scores=np.zeros(0, dtype=np.float32),
            mask_scores=np.zeros(0, dtype=np.float32),
            image_size=(h, w),
            source=source,
        )

    @classmethod
    def concat(cls, results: Sequence[Result]) -> Result:
        """Stack the instances of several results of the same image size, in order."""
        if not results:
            raise ValueError("concat() needs at least one Result (the image size comes from them)")
        sizes = {r.image_size for r in results}
        if len(sizes) > 1:
            raise ValueError(f"cannot concat results of different image sizes: {sorted(sizes)}")
        return cls(
            masks=np.concatenate([r.masks for r in results]),
            boxes=np.concatenate([r.boxes for r in results]),
            labels=[label for r in results for label in r.labels],
            scores=np.concatenate([r.scores for r in results]),
            mask_scores=np.concatenate([r.mask_scores for r in results]),
            image_size=results[0].image_size,
            source=results[0].source if len({r.source for r in results}) == 1 else None,
        )

    def __len__(self) -> int:
        return self.masks.shape[0]

    def __iter__(self) -> Iterator[Instance]:
        for i, label in enumerate(self.labels):
            yield Instance(
                self.masks[i], self.boxes[i], label, float(self.scores[i]), float(self.mask_scores[i])
            )

    def __getitem__(self, key: int | slice | Sequence[int] | np.ndarray) -> Result:
        """Select instances by int (a 1-instance Result), slice, boolean mask of length N or int array."""
        n = len(self)
        key_arr = np.asarray(key) if isinstance(key, (list, tuple, np.ndarray)) else key
        if isinstance(key_arr, np.ndarray):
            if key_arr.size == 0:
                key_arr = key_arr.astype(np.intp)  # [] parses as float64
            elif key_arr.dtype == bool and key_arr.shape != (n,):
                raise IndexError(f"a boolean index must have shape ({n},); got {key_arr.shape}")
        try:
            idx = np.atleast_1d(np.arange(n)[key_arr])
        except IndexError as e:
            raise IndexError(f"invalid index {key!r} for a Result with {n} instances: {e}") from e
        return Result(
            masks=self.masks[idx],
            boxes=self.boxes[idx],
            labels=[self.labels[i] for i in idx],
            scores=self.scores[idx],
            mask_scores=self.mask_scores[idx],
            image_size=self.image_size,
            source=self.source,
        )

    def __repr__(self) -> str:
        return f"Result(n={len(self)}, image_size={self.image_size}, labels={self.labels})"

    @property
    def areas(self) -> np.ndarray:
        """(N,) int64 number of pixels of each mask."""
        return self.masks.sum(axis=(1, 2), dtype=np.int64)

    def mask_boxes(self) -> np.ndarray:
        """(N, 4) float32 XYXY box of each mask, pixel edges with exclusive x2 / y2 (COCO's ``toBbox``):
        a mask spanning columns 3..7 gives x1 = 3, x2 = 8. An empty mask keeps its detector box.

        Exporters write these, so that every exported box encloses its mask; `boxes` stays the
        detector's box (the SAM prompt), which the mask can overflow.
        """
        from grounded_sam.ops.boxes import masks_to_boxes

        empty = ~self.masks.any(axis=(1, 2))
        return np.where(empty[:, None], self.boxes, masks_to_boxes(self.masks)).astype(np.float32)

    def filter(
        self,
        *,
        min_score: float | None = None,
        labels: Iterable[str] | None = None,
        min_area: int | None = None,
        min_mask_score: float | None = None,
    ) -> Result:
        """Keep the instances with score >= `min_score`, a label in `labels`, area >= `min_area` pixels
        and mask_score >= `min_mask_score` (each criterion only when given)."""
        keep = np.ones(len(self), dtype=bool)
        if min_score is not None:
            keep &= self.scores >= min_score
        if min_mask_score is not None:
            keep &= self.mask_scores >= min_mask_score
        if labels is not None:
            wanted = {labels} if isinstance(labels, str) else set(labels)
            keep &= np.array([label in wanted for label in self.labels], dtype=bool)
        if min_area is not None:
            keep &= self.areas >= min_area
        return self[keep]

    def instance_map(self) -> np.ndarray:
        """(H, W) int32 index of the instance shown at each pixel, -1 where no mask covers it.

        Where masks overlap the smaller one wins, so that small objects stay visible on top of large ones.
        """
        owner = np.full(self.image_size, -1, dtype=np.int32)
        # Paint large masks first so that smaller ones overwrite them; one pass per instance keeps
        # memory at O(H * W) instead of copying the (N, H, W) stack.
        for i in np.argsort(-self.areas, kind="stable"):
            np.putmask(owner, self.masks[i], np.int32(i))
        return owner

    def overlay(
        self,
        image: ImageInput,
        *,
        alpha: float = 0.5,
        show_boxes: bool = True,
        show_labels: bool = True,
        colors: Mapping[str, tuple[int, int, int]] | None = None,
    ) -> Image.Image:
        """Draw this result on `image`; see `grounded_sam.annotate.overlay`."""
        from grounded_sam.annotate import overlay

        return overlay(
            image, self, alpha=alpha, show_boxes=show_boxes, show_labels=show_labels, colors=colors
        )

    def to_coco(
        self,
        image_id: int = 1,
        category_ids: Mapping[str, int] | None = None,
        start_id: int = 1,
        segmentation: Literal["rle", "polygon"] = "rle",
    ) -> list[dict[str, Any]]:
        """COCO annotation dicts; see `grounded_sam.export.coco.result_to_coco_annotations`."""
        from grounded_sam.export.coco import result_to_coco_annotations

        return result_to_coco_annotations(
            self, image_id, category_ids, start_id=start_id, segmentation=segmentation
        )

    def to_yolo(
        self,
        class_ids: Mapping[str, int] | None = None,
        task: Literal["segment", "detect"] = "segment",
    ) -> list[str]:
        """YOLO label lines; see `grounded_sam.export.yolo`."""
        from grounded_sam.export.yolo import result_to_yolo_box_lines, result_to_yolo_lines

        if task == "detect":
            return result_to_yolo_box_lines(self, class_ids)
        if task == "segment":
            return result_to_yolo_lines(self, class_ids)
        raise ValueError(f"task must be 'segment' or 'detect'; got {task!r}")

    def save(
        self,
        out_dir: str | os.PathLike[str],
        format: ExportFormat = "json",
        *,
        stem: str = "result",
        image: ImageInput | None = None,
        class_ids: Mapping[str, int] | None = None,
        file_name: str | None = None,
    ) -> list[Path]:
        """Write this result to `out_dir` atomically; see `grounded_sam.export.save_result`.

        The ``overlay`` format draws on `image`, by default the image at `source`."""
        from grounded_sam.export import save_result

        return save_result(
            self, out_dir, format, stem=stem, image=image, class_ids=class_ids, file_name=file_name
        )

    def to_supervision(self, class_ids: Mapping[str, int] | None = None) -> Any:
        """A `supervision.Detections`; see `grounded_sam.export.supervision.to_supervision`."""
        from grounded_sam.export.supervision import to_supervision

        return to_supervision(self, class_ids)


def _to_numpy(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):  # torch tensor, possibly on an accelerator
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def _check_image_size(size: Any) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in size)
    except (TypeError, ValueError) as e:
        raise ValueError(f"image_size must be (H, W), two positive ints; got {size!r}") from e
    if h <= 0 or w <= 0:
        raise ValueError(f"image_size must be (H, W), two positive ints; got {size!r}")
    return h, w


def _check_masks(masks: Any, image_size: tuple[int, int]) -> np.ndarray:
    arr = _to_numpy(masks)
    if arr.ndim != 3 or arr.shape[1:] != image_size:
        raise ValueError(f"masks must have shape (N, {image_size[0]}, {image_size[1]}); got {arr.shape}")
    if arr.dtype == bool:
        return arr
    if arr.dtype.kind not in "iuf" or not np.isin(arr, (0, 1)).all():
        raise TypeError(
            f"masks must be boolean (or 0/1 numbers); got dtype {arr.dtype} with other values, "
            "threshold them first (e.g. logits > 0)"
        )
    return arr.astype(bool)


def _check_floats(values: Any, name: str, shape: tuple[int, ...]) -> np.ndarray:
    arr = _to_numpy(values)
    if arr.size == 0 and shape[0] == 0:
        arr = arr.reshape(shape)  # accept [] or np.zeros(0) for an empty result
    if arr.shape != shape:
        expected = "(N, 4)" if len(shape) == 2 else "(N,)"
        raise ValueError(f"{name} must have shape {expected} = {shape} to match the masks; got {arr.shape}")
    if arr.dtype.kind not in "iuf":
        raise TypeError(f"{name} must be real numbers; got dtype {arr.dtype}")
    arr = arr.astype(np.float32, copy=False)
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    return arr


def _check_labels(labels: Any, n: int) -> list[str]:
    if isinstance(labels, str):
        raise TypeError(f"labels must be a list of N strings, not one string ({labels!r}); wrap it in a list")
    out = list(labels)
    if len(out) != n:
        raise ValueError(f"labels must have length N = {n} to match the masks; got {len(out)}")
    for label in out:
        if not isinstance(label, str):
            raise TypeError(f"labels must be strings; got {type(label).__name__} {label!r}")
    return [str(label) for label in out]
