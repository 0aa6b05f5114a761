"""Reading the lossless ``json`` export (`export.save.result_to_dict`) back into a `Result`."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from grounded_sam.result import Result


def result_from_dict(data: Mapping[str, Any]) -> Result:
    """Inverse of `result_to_dict`."""
    try:
        h, w = data["image_size"]
        return result_from_instances(data["instances"], (h, w), source=data.get("source"))
    except (KeyError, TypeError) as e:
        raise ValueError(f"not a grounded_sam result dict (missing or malformed field: {e})") from e


def result_from_instances(
    instances: Sequence[Mapping[str, Any]],
    image_size: tuple[int, int],
    *,
    source: str | None = None,
    label_key: str = "label",
) -> Result:
    """A `Result` of (H, W) `image_size` from instance dicts as the ``json`` export and the labelling
    records store them: ``mask`` (COCO RLE), ``box`` (XYXY), the label under `label_key`, ``score`` and
    ``mask_score``. Raises KeyError or TypeError on a malformed instance."""
    from grounded_sam.ops.rle import rle_to_mask

    if not instances:
        return Result.empty(image_size, source)
    return Result(
        masks=np.stack([rle_to_mask(inst["mask"]) for inst in instances]),
        boxes=np.array([inst["box"] for inst in instances], dtype=np.float32),
        labels=[inst[label_key] for inst in instances],
        scores=np.array([inst["score"] for inst in instances], dtype=np.float32),
        mask_scores=np.array([inst["mask_score"] for inst in instances], dtype=np.float32),
        image_size=image_size,
        source=source,
    )


def load_result(path: str | os.PathLike[str]) -> Result:
    """Read a ``json`` export written by `save_result` back into a `Result`."""
    with open(path, encoding="utf-8") as f:
        try:
            data = json.load(f)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path} is not valid JSON: {e}") from e
    return result_from_dict(data)
