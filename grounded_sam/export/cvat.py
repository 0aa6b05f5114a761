"""CVAT export: "CVAT for images 1.1" XML with one ``<box>`` and one ``<mask>`` per instance.

Layout of the file (what CVAT and datumaro's ``cvat`` format import)::

    <annotations>
      <version>1.1</version>
      <meta><task>... <labels><label><name>car</name>...</label></labels></task></meta>
      <image id="0" name="train/a.jpg" width="W" height="H">
        <box label="car" source="auto" occluded="0" xtl= ytl= xbr= ybr= z_order="0"/>
        <mask label="car" source="auto" occluded="0" rle="3, 5, 2, ..." left= top= width= height=/>
      </image>
    </annotations>

A mask is stored inside its own box (left, top, width, height in pixels): run lengths over the box's
pixels in row-major order, alternating background / mask and starting with background (possibly 0).
The ``<box>`` is the mask's box (`Result.mask_boxes`), pixel edges, so box and mask agree.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from xml.sax.saxutils import quoteattr

import numpy as np

from grounded_sam.ops.boxes import masks_to_boxes
from grounded_sam.result import Result

# Distinct colours for the label list (CVAT shows them; any valid #rrggbb works).
_PALETTE = ("#ff6037", "#33ddff", "#fa3253", "#34d1b7", "#ff007c", "#ddff33", "#24b353", "#b83df5")


def mask_to_cvat_rle(mask: np.ndarray) -> tuple[list[int], tuple[int, int, int, int]]:
    """(H, W) bool mask -> (run lengths within its box, (left, top, width, height)); an empty mask
    gives ([], (0, 0, 0, 0))."""
    mask = np.asarray(mask, dtype=bool)
    if not mask.any():
        return [], (0, 0, 0, 0)
    x0, y0, x1, y1 = (int(v) for v in masks_to_boxes(mask[None])[0])  # far edge exclusive
    flat = mask[y0:y1, x0:x1].ravel()
    changes = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    bounds = np.concatenate([[0], changes, [flat.size]])
    runs = np.diff(bounds).tolist()
    if flat[0]:
        runs.insert(0, 0)  # runs start with background
    return [int(r) for r in runs], (x0, y0, x1 - x0, y1 - y0)


def result_to_cvat_shapes(result: Result) -> list[dict[str, Any]]:
    """JSON-ready shapes of one image: a box and a mask per instance (empty masks give a box only)."""
    shapes: list[dict[str, Any]] = []
    for inst, box in zip(result, result.mask_boxes(), strict=True):
        common = {"label": inst.label, "score": round(inst.score, 4)}
        shapes.append({"type": "box", **common, "points": [round(float(v), 2) for v in box]})
        runs, (left, top, width, height) = mask_to_cvat_rle(inst.mask)
        if runs:
            shapes.append(
                {
                    "type": "mask",
                    **common,
                    "rle": runs,
                    "left": left,
                    "top": top,
                    "width": width,
                    "height": height,
                }
            )
    return shapes


def cvat_xml(
    images: Sequence[tuple[str, tuple[int, int], Sequence[dict[str, Any]]]],
    class_names: Sequence[str],
    *,
    task_name: str = "grounded_sam",
) -> str:
    """The whole XML document: `images` are (name relative to the images folder, (H, W), shapes from
    `result_to_cvat_shapes`), ids 0, 1, ... in that order."""
    labels = "".join(
        f"      <label><name>{_text(name)}</name><color>{_PALETTE[i % len(_PALETTE)]}</color>"
        "<type>any</type><attributes></attributes></label>\n"
        for i, name in enumerate(class_names)
    )
    parts = [
        '<?xml version="1.0" encoding="utf-8"?>\n<annotations>\n  <version>1.1</version>\n  <meta>\n',
        f"    <task><name>{_text(task_name)}</name><size>{len(images)}</size><mode>annotation</mode>\n",
        f"      <labels>\n{labels}      </labels>\n    </task>\n  </meta>\n",
    ]
    for image_id, (name, (h, w), shapes) in enumerate(images):
        parts.append(f'  <image id="{image_id}" name={quoteattr(name)} width="{w}" height="{h}">\n')
        parts += [_shape_xml(shape) for shape in shapes]
        parts.append("  </image>\n")
    parts.append("</annotations>\n")
    return "".join(parts)


def _shape_xml(shape: dict[str, Any]) -> str:
    head = f'    <{shape["type"]} label={quoteattr(shape["label"])} source="auto" occluded="0" z_order="0"'
    if shape["type"] == "box":
        x0, y0, x1, y1 = shape["points"]
        return f'{head} xtl="{x0}" ytl="{y0}" xbr="{x1}" ybr="{y1}"></box>\n'
    rle = ", ".join(str(r) for r in shape["rle"])
    geometry = (
        f'left="{shape["left"]}" top="{shape["top"]}" width="{shape["width"]}" height="{shape["height"]}"'
    )
    return f'{head} rle="{rle}" {geometry}></mask>\n'


def _text(value: str) -> str:
    return quoteattr(value)[1:-1]
