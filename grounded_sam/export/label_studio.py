"""Label Studio export: predictions in Label Studio's task JSON, masks as brush RLE or polygons.

A task is ``{"data": {"image": URL}, "predictions": [{"model_version": ..., "score": ..., "result": [...]}]}``
and each result region is one instance with its class name:

* ``brushlabels``: ``value = {"format": "rle", "rle": [bytes...], "brushlabels": [name]}``. The RLE is
  Label Studio's own encoding (thi.ng's rle-pack): the mask as a row-major RGBA byte image (every pixel's
  value written 4 times, 255 inside), packed as a bit stream: a 32-bit value count, the word size minus
  one (5 bits), four run-length field sizes minus one (4 bits each), then chunks
  ``[repeat bit][size index: 2 bits][run length - 1][word]``, most significant bit first.
* ``polygonlabels``: ``value = {"points": [[x%, y%], ...], "closed": true, "polygonlabels": [name]}``,
  one region per connected component, vertices in percent of the image width / height.

`label_config` writes the matching labelling interface (``<BrushLabels>`` or ``<PolygonLabels>``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal
from xml.sax.saxutils import quoteattr

import numpy as np

from grounded_sam.ops.polygons import mask_to_polygons
from grounded_sam.result import Result

LabelStudioMasks = Literal["brush", "polygon"]
FROM_NAME, TO_NAME = "label", "image"
_WORD_BITS = 8
_RUN_FIELDS = (4, 8, 12, 16)  # bits of (run length - 1) for the four size indices
_MAX_RUN = 1 << _RUN_FIELDS[-1]


def mask_to_brush_rle(mask: np.ndarray) -> list[int]:
    """(H, W) bool mask -> Label Studio brush RLE (a list of byte values), in its own encoding."""
    mask = np.asarray(mask, dtype=bool)
    if mask.ndim != 2:
        raise ValueError(f"mask must have shape (H, W); got {mask.shape}")
    flat = mask.ravel()
    starts = np.flatnonzero(np.concatenate([[True], flat[1:] != flat[:-1]]))
    lengths = np.diff(np.append(starts, flat.size)) * 4  # RGBA: each pixel is 4 equal words
    fields = [f"{flat.size * 4:032b}", f"{_WORD_BITS - 1:05b}", *(f"{n - 1:04b}" for n in _RUN_FIELDS)]
    for start, length in zip(starts.tolist(), lengths.tolist(), strict=True):
        word = f"{255 if flat[start] else 0:08b}"
        while length > 0:
            run = min(length, _MAX_RUN)
            index = next(i for i, bits in enumerate(_RUN_FIELDS) if run - 1 < 1 << bits)
            fields.append(f"1{index:02b}{run - 1:0{_RUN_FIELDS[index]}b}{word}")
            length -= run
    bits = "".join(fields)
    bits += "0" * (-len(bits) % 8)
    return list(int(bits, 2).to_bytes(len(bits) // 8, "big")) if bits else []


def result_to_label_studio(
    result: Result,
    *,
    masks: LabelStudioMasks = "brush",
    tolerance: float = 1.0,
    from_name: str = FROM_NAME,
    to_name: str = TO_NAME,
) -> list[dict[str, Any]]:
    """The result regions of one prediction: one per instance (``brush``) or per component
    (``polygon``), each with the instance's label as its class name and its detector score.
    ``from_name`` / ``to_name`` name the control and image tags of the project's labelling config."""
    if masks not in ("brush", "polygon"):
        raise ValueError(f"masks must be 'brush' or 'polygon'; got {masks!r}")
    h, w = result.image_size
    regions = []
    for i, inst in enumerate(result):
        base = {
            "from_name": from_name,
            "to_name": to_name,
            "original_width": w,
            "original_height": h,
            "image_rotation": 0,
            "score": round(inst.score, 4),
        }
        if masks == "brush":
            value = {"format": "rle", "rle": mask_to_brush_rle(inst.mask), "brushlabels": [inst.label]}
            regions.append({"id": f"r{i}", "type": "brushlabels", **base, "value": value})
            continue
        polygons = mask_to_polygons(inst.mask, normalize=True, tolerance=tolerance, keep_holes=False)
        for k, poly in enumerate(polygons):
            points = [[round(float(x) * 100, 3), round(float(y) * 100, 3)] for x, y in poly]
            value = {"points": points, "closed": True, "polygonlabels": [inst.label]}
            regions.append({"id": f"r{i}_{k}", "type": "polygonlabels", **base, "value": value})
    return regions


def box_to_percent(box: np.ndarray, width: int, height: int) -> dict[str, float]:
    """(4,) XYXY pixels -> a ``rectanglelabels`` value ``{x, y, width, height, rotation}`` in percent."""
    x0, y0, x1, y1 = (float(v) for v in box)
    return {
        "x": 100.0 * x0 / width,
        "y": 100.0 * y0 / height,
        "width": 100.0 * (x1 - x0) / width,
        "height": 100.0 * (y1 - y0) / height,
        "rotation": 0.0,
    }


def label_studio_task(
    image_url: str, regions: Sequence[dict[str, Any]], scores: Sequence[float], model_version: str
) -> dict[str, Any]:
    """One task: the image URL and one prediction holding `regions` (score: the mean of `scores`)."""
    score = float(np.mean(scores)) if len(scores) else 0.0
    prediction = {"model_version": model_version, "score": round(score, 4), "result": list(regions)}
    return {"data": {"image": image_url}, "predictions": [prediction]}


def label_config(class_names: Sequence[str], masks: LabelStudioMasks = "brush") -> str:
    """The Label Studio labelling interface (XML) that the tasks' regions belong to."""
    tag = "BrushLabels" if masks == "brush" else "PolygonLabels"
    labels = "".join(f"    <Label value={quoteattr(name)}/>\n" for name in class_names)
    return (
        "<View>\n"
        f'  <Image name="{TO_NAME}" value="$image" zoom="true"/>\n'
        f'  <{tag} name="{FROM_NAME}" toName="{TO_NAME}">\n{labels}  </{tag}>\n'
        "</View>\n"
    )
