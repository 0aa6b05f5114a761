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

from grounded_sam.ops.mask_crops import MaskCrops
from grounded_sam.result_checks import check_floats, check_image_size, check_labels, check_masks

if TYPE_CHECKING:
    from PIL import Image

    from grounded_sam.export.save import ExportFormat
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
        masks: (N, H, W) bool. A result may be built from a compact `MaskCrops` instead (tiled
            prediction of large images does): then ``masks`` is materialised on first access only, and
            iteration, indexing, ``areas``, ``mask_boxes``, ``rles``, ``instance_map`` and the exporters
            work from the crops, one full-size mask at a time at most.
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

    masks: np.ndarray  # a property below: dense, or materialised from `MaskCrops`
    boxes: np.ndarray
    labels: list[str]
    scores: np.ndarray
    mask_scores: np.ndarray
    image_size: tuple[int, int]
    source: str | None = None

    def __post_init__(self) -> None:
        self.image_size = check_image_size(self.image_size)
        self.source = None if self.source is None else os.fspath(self.source)
        if self._crops is None:
            self._dense = check_masks(self._dense, self.image_size)
        elif self._crops.image_size != self.image_size:
            raise ValueError(
                f"mask crops are of a {self._crops.image_size} image; image_size is {self.image_size}"
            )
        n = len(self)
        self.boxes = check_floats(self.boxes, "boxes", (n, 4))
        self.scores = check_floats(self.scores, "scores", (n,))
        self.mask_scores = check_floats(self.mask_scores, "mask_scores", (n,))
        self.labels = check_labels(self.labels, n)

    @classmethod
    def empty(cls, image_size: tuple[int, int], source: str | None = None) -> Result:
        """A result with no instances (N = 0) for an image of (H, W) = `image_size`."""
        h, w = check_image_size(image_size)
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
        compact = all(r.compact for r in results)
        return cls(
            masks=MaskCrops.concat([r.mask_crops() for r in results])
            if compact
            else np.concatenate([r.masks for r in results]),
            boxes=np.concatenate([r.boxes for r in results]),
            labels=[label for r in results for label in r.labels],
            scores=np.concatenate([r.scores for r in results]),
            mask_scores=np.concatenate([r.mask_scores for r in results]),
            image_size=results[0].image_size,
            source=results[0].source if len({r.source for r in results}) == 1 else None,
        )

    def __len__(self) -> int:
        return len(self._crops) if self._crops is not None else self._dense.shape[0]

    def __iter__(self) -> Iterator[Instance]:
        for i, label in enumerate(self.labels):
            yield Instance(
                self.mask(i), self.boxes[i], label, float(self.scores[i]), float(self.mask_scores[i])
            )

    def _get_masks(self) -> np.ndarray:
        if self._dense is None:
            self._dense = self._crops.dense()
        return self._dense

    def _set_masks(self, masks: np.ndarray | MaskCrops) -> None:
        compact = isinstance(masks, MaskCrops)
        self._crops: MaskCrops | None = masks if compact else None
        self._dense: np.ndarray | None = None if compact else masks

    @property
    def compact(self) -> bool:
        """True while the masks are held as crops only (``masks`` not materialised)."""
        return self._dense is None

    def mask(self, i: int) -> np.ndarray:
        """(H, W) bool mask of instance i (from the crops when the result is compact)."""
        return self._crops.mask(i) if self._dense is None else self._dense[i]

    def mask_crops(self) -> MaskCrops:
        """The masks as `MaskCrops` (cut from the dense stack when the result holds one)."""
        return self._crops if self._dense is None else MaskCrops.from_dense(self._dense)

    def rles(self) -> list[dict[str, Any]]:
        """COCO compressed RLE dict of each mask (see `grounded_sam.ops.rle`); from the crops when the
        result is compact, without a full-size mask."""
        from grounded_sam.ops.rle import counts_to_rle, masks_to_rles

        if self._dense is not None:
            return masks_to_rles(self._dense)
        return [counts_to_rle(self._crops.counts(i), self.image_size) for i in range(len(self))]

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
            masks=self._crops.select(idx) if self._dense is None else self._dense[idx],
            boxes=self.boxes[idx],
            labels=[self.labels[i] for i in idx],
            scores=self.scores[idx],
            mask_scores=self.mask_scores[idx],
            image_size=self.image_size,
            source=self.source,
        )

    def with_labels(self, labels: Sequence[str], scores: np.ndarray | None = None) -> Result:
        """The same instances (masks kept as they are held, dense or compact) with other labels (and
        scores)."""
        masks = self._crops if self._dense is None else self._dense
        scores = self.scores if scores is None else scores
        return Result(masks, self.boxes, list(labels), scores, self.mask_scores, self.image_size, self.source)

    def __repr__(self) -> str:
        return f"Result(n={len(self)}, image_size={self.image_size}, labels={self.labels})"

    @property
    def areas(self) -> np.ndarray:
        """(N,) int64 number of pixels of each mask."""
        if self._dense is None:
            return self._crops.areas()
        return self.masks.sum(axis=(1, 2), dtype=np.int64)

    def mask_boxes(self) -> np.ndarray:
        """(N, 4) float32 XYXY box of each mask, pixel edges with exclusive x2 / y2 (COCO's ``toBbox``):
        a mask spanning columns 3..7 gives x1 = 3, x2 = 8. An empty mask keeps its detector box.

        Exporters write these, so that every exported box encloses its mask; `boxes` stays the
        detector's box (the SAM prompt), which the mask can overflow.
        """
        from grounded_sam.ops.boxes import masks_to_boxes

        if self._dense is None:
            empty = self.areas == 0
            tight = self._crops.boxes()
        else:
            empty = ~self._dense.any(axis=(1, 2))
            tight = masks_to_boxes(self._dense)
        return np.where(empty[:, None], self.boxes, tight).astype(np.float32)

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
            if self._dense is None:
                self._crops.paste(int(i), owner, np.int32(i))
            else:
                np.putmask(owner, self._dense[i], np.int32(i))
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
        from grounded_sam.export.save import save_result

        return save_result(
            self, out_dir, format, stem=stem, image=image, class_ids=class_ids, file_name=file_name
        )

    def to_supervision(self, class_ids: Mapping[str, int] | None = None) -> Any:
        """A `supervision.Detections`; see `grounded_sam.export.supervision.to_supervision`."""
        from grounded_sam.export.supervision import to_supervision

        return to_supervision(self, class_ids)


# `masks` is a property (dense stack or crops behind it); the dataclass's __init__ assigns it through the
# setter, and dataclasses.replace reads it through the getter.
Result.masks = property(  # type: ignore[assignment]
    Result._get_masks, Result._set_masks, doc="(N, H, W) bool masks (materialised from crops if compact)."
)
