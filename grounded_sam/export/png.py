"""PNG export: one black/white PNG per instance and one label-index PNG for the whole image."""

from __future__ import annotations

import io
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from grounded_sam.atomic import atomic_write_bytes, atomic_write_text
from grounded_sam.export.class_ids import resolve_class_ids

if TYPE_CHECKING:
    from grounded_sam.result import Result


def mask_png_bytes(mask: np.ndarray) -> bytes:
    """(H, W) bool mask -> an 8-bit grayscale PNG, 255 inside the mask and 0 outside."""
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"mask must have shape (H, W); got {mask.shape}")
    return _png_bytes(Image.fromarray(mask.astype(np.uint8) * np.uint8(255)))


def index_png_bytes(index_map: np.ndarray) -> bytes:
    """(H, W) non-negative integer map -> an 8-bit PNG, or a 16-bit one when a value exceeds 255."""
    index_map = np.asarray(index_map)
    if index_map.ndim != 2 or index_map.dtype.kind not in "iu":
        raise ValueError(
            f"index_map must be an (H, W) integer array; got {index_map.dtype}, {index_map.shape}"
        )
    top = int(index_map.max(initial=0))
    if index_map.size and (int(index_map.min()) < 0 or top > 65535):
        raise ValueError(f"index_map values must lie in [0, 65535]; got [{index_map.min()}, {top}]")
    dtype = np.uint8 if top <= 255 else np.uint16
    return _png_bytes(Image.fromarray(index_map.astype(dtype)))


def label_index_map(result: Result, class_ids: Mapping[str, int] | None = None) -> np.ndarray:
    """(H, W) int32 map: 0 for background, else the class id (>= 1) of the instance shown at the pixel.

    Overlaps go to the smaller mask (`Result.instance_map`). `class_ids` maps label -> id >= 1; by
    default the labels of `result` are numbered from 1 in sorted order.
    """
    ids = resolve_class_ids(result, class_ids, start=1)
    if any(v < 1 for v in ids.values()):
        raise ValueError(f"class ids of a label-index PNG must be >= 1 (0 is background); got {ids}")
    lookup = np.array([0, *(ids[label] for label in result.labels)], dtype=np.int32)
    return lookup[result.instance_map() + 1]


def save_png_masks(
    result: Result,
    out_dir: str | os.PathLike[str],
    *,
    stem: str = "result",
    class_ids: Mapping[str, int] | None = None,
) -> list[Path]:
    """Write ``{stem}_labels.png`` (label-index map), ``{stem}_labels.txt`` ("value name" per line) and
    ``{stem}_mask_{i:03d}_{label}.png`` per instance into `out_dir`, atomically; return the paths."""
    out = Path(out_dir)
    ids = resolve_class_ids(result, class_ids, start=1)
    index_map = label_index_map(result, ids)
    legend = "".join(f"{cid} {name}\n" for name, cid in sorted(ids.items(), key=lambda x: x[1]))
    paths = [
        atomic_write_bytes(out / f"{stem}_labels.png", index_png_bytes(index_map)),
        atomic_write_text(out / f"{stem}_labels.txt", f"0 background\n{legend}"),
    ]
    for i, inst in enumerate(result):
        name = f"{stem}_mask_{i:03d}_{_file_safe(inst.label)}.png"
        paths.append(atomic_write_bytes(out / name, mask_png_bytes(inst.mask)))
    return paths


def _png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _file_safe(label: str) -> str:
    return re.sub(r"[^\w\-]+", "_", label).strip("_")[:40] or "object"
