"""Conversion to `supervision.Detections` (optional dependency, imported only when used)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

import numpy as np

from grounded_sam.export.class_ids import resolve_class_ids

if TYPE_CHECKING:
    import supervision as sv

    from grounded_sam.result import Result


def to_supervision(result: Result, class_ids: Mapping[str, int] | None = None) -> sv.Detections:
    """`result` as `supervision.Detections`: xyxy, mask, confidence (= scores) and class_id.

    ``xyxy`` is each mask's box (`Result.mask_boxes`: pixel edges, exclusive far edge), so that boxes
    and masks agree; the detector's boxes are in ``data["detector_xyxy"]``.

    `class_ids` maps label -> id (default: the labels of `result` numbered from 0 in sorted order).
    `data["class_name"]` holds the labels and `data["mask_score"]` the SAM IoU predictions, so nothing
    is lost. Needs ``pip install supervision``.
    """
    try:
        import supervision as sv
    except ImportError as e:
        raise ImportError("to_supervision() needs the supervision package: `pip install supervision`") from e
    ids = resolve_class_ids(result, class_ids, start=0)
    return sv.Detections(
        xyxy=result.mask_boxes(),
        mask=result.masks.copy(),
        confidence=result.scores.copy(),
        class_id=np.array([ids[label] for label in result.labels], dtype=np.int64),
        data={
            "class_name": np.array(result.labels, dtype=str),
            "mask_score": result.mask_scores.copy(),
            "detector_xyxy": result.boxes.copy(),
        },
    )
