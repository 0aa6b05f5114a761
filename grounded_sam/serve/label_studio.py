"""Label Studio's side of the ML backend protocol: the labelling config read, results written.

A project's labelling config names what to find: each ``<Label value="Car"/>`` of a ``BrushLabels``,
``PolygonLabels`` or ``RectangleLabels`` tag is asked for as the phrase "Car", or as the phrases of its
``predicted_values`` (comma-separated; else its ``hint``), and every result carries the Label Studio
label, never the phrase, so nothing is relabelled by hand.
"""

from __future__ import annotations

import xml.etree.ElementTree as ElementTree
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from grounded_sam.export.label_studio import box_to_percent, result_to_label_studio
from grounded_sam.result import Result
from grounded_sam.serve.errors import invalid

REGION_TAGS: Mapping[str, str] = {
    "BrushLabels": "brushlabels",
    "PolygonLabels": "polygonlabels",
    "RectangleLabels": "rectanglelabels",
}
"""Control tags this backend fills -> the result ``type`` Label Studio expects for them."""

CONTEXT_TYPES = ("keypointlabels", "rectanglelabels")
"""Result types of an annotator's interactive prompt (a smart click or box)."""


@dataclass(frozen=True)
class ControlTag:
    """One region control of the labelling config.

    Attributes:
        name: the tag's ``name`` (a result's ``from_name``); to_name: its image's ``name``.
        kind: ``BrushLabels``, ``PolygonLabels`` or ``RectangleLabels``.
        data_key: the task data field holding the image URL (``$image`` -> ``image``).
        phrases: phrase -> Label Studio label, for every label of the tag.
    """

    name: str
    kind: str
    to_name: str
    data_key: str
    phrases: Mapping[str, str] = field(default_factory=dict)

    @property
    def result_type(self) -> str:
        return REGION_TAGS[self.kind]


def parse_label_config(label_config: str) -> list[ControlTag]:
    """The region controls of a labelling config (XML); 422 when it is not XML or names none."""
    try:
        root = ElementTree.fromstring(label_config)
    except ElementTree.ParseError as error:
        raise invalid(f"label_config is not valid XML ({error})") from None
    images = {
        tag.get("name"): tag.get("value", "").lstrip("$")
        for tag in root.iter()
        if tag.tag == "Image" and tag.get("name")
    }
    controls = []
    for tag in root.iter():
        if tag.tag not in REGION_TAGS:
            continue
        to_name = tag.get("toName", "")
        if to_name not in images:
            raise invalid(f"<{tag.tag} name={tag.get('name')!r}> points at no <Image> named {to_name!r}")
        phrases = {phrase: label for label, names in _label_phrases(tag) for phrase in names}
        controls.append(ControlTag(tag.get("name", ""), tag.tag, to_name, images[to_name], phrases))
    if not controls:
        raise invalid(f"the labelling config has no {', '.join(REGION_TAGS)} tag with an <Image>")
    return controls


def _label_phrases(tag: ElementTree.Element) -> list[tuple[str, list[str]]]:
    """(label, the phrases asked for it) for every <Label> under ``tag``."""
    found = []
    for label in tag.iter("Label"):
        value = label.get("value")
        if not value:
            continue
        other = label.get("predicted_values") or label.get("hint") or ""
        names = [name.strip() for name in other.split(",") if name.strip()] or [value]
        found.append((value, names))
    return found


def region_results(result: Result, controls: list[ControlTag], model_version: str) -> dict[str, Any]:
    """One Label Studio prediction for one task: every mask, for every control that asked for its
    phrase, as a brush (RLE), polygons or a rectangle (percent), with its Label Studio label."""
    regions = []
    for control in controls:
        keep = [i for i, phrase in enumerate(result.labels) if phrase in control.phrases]
        chosen = result[keep]
        chosen = chosen.with_labels([control.phrases[phrase] for phrase in chosen.labels])
        for region in _control_regions(chosen, control):
            region["id"] = f"{control.name}-{region['id']}"  # unique across the controls of a task
            regions.append(region)
    return prediction(regions, model_version)


def _control_regions(result: Result, control: ControlTag) -> list[dict[str, Any]]:
    if control.kind != "RectangleLabels":
        masks = "brush" if control.kind == "BrushLabels" else "polygon"
        return result_to_label_studio(result, masks=masks, from_name=control.name, to_name=control.to_name)
    height, width = result.image_size
    return [
        {
            "id": f"r{i}",
            "from_name": control.name,
            "to_name": control.to_name,
            "type": "rectanglelabels",
            "original_width": width,
            "original_height": height,
            "image_rotation": 0,
            "value": {**box_to_percent(instance.box, width, height), "rectanglelabels": [instance.label]},
            "score": round(instance.score, 4),
        }
        for i, instance in enumerate(result)
    ]


def prediction(regions: list[dict[str, Any]], model_version: str) -> dict[str, Any]:
    """A task's prediction: its regions, their mean score (0 without regions) and the model version."""
    scores = [region["score"] for region in regions]
    return {
        "result": regions,
        "score": float(np.mean(scores)) if scores else 0.0,
        "model_version": model_version,
    }


@dataclass(frozen=True)
class ClickContext:
    """An annotator's interactive prompt in image pixels: (P, 2) ``points`` with (P,) ``point_labels``
    (1 positive, 0 negative), at most one XYXY ``box``, and the label they chose."""

    points: np.ndarray | None
    point_labels: np.ndarray | None
    box: np.ndarray | None
    label: str | None


def click_context(context: Mapping[str, Any] | None) -> ClickContext | None:
    """The clicks and box of a ``/predict`` request's ``params.context`` (None when there is none)."""
    regions = [r for r in (context or {}).get("result") or [] if r.get("type") in CONTEXT_TYPES]
    if not regions:
        return None
    points, labels, box, label = [], [], None, None
    for region in regions:
        try:
            width, height = float(region["original_width"]), float(region["original_height"])
            value = region["value"]
            x, y = float(value["x"]) * width / 100, float(value["y"]) * height / 100
        except (KeyError, TypeError, ValueError) as error:
            raise invalid(
                f"a context region lacks {error}: give value.x/y and original_width/height"
            ) from None
        label = (value.get(region["type"]) or [label])[0]
        if region["type"] == "keypointlabels":
            points.append((x, y))
            labels.append(1 if region.get("is_positive", True) else 0)
        else:
            w, h = float(value.get("width", 0)) * width / 100, float(value.get("height", 0)) * height / 100
            box = np.array([x, y, x + w, y + h], dtype=np.float32)
    return ClickContext(
        np.array(points, dtype=np.float32).reshape(-1, 2) if points else None,
        np.array(labels, dtype=np.int64) if points else None,
        box,
        label,
    )


def click_result(
    mask: np.ndarray, score: float, controls: list[ControlTag], label: str | None, model_version: str
) -> dict[str, Any]:
    """The prediction answering a click: the mask as a brush (or polygons when there is no brush
    control), labelled with the label the annotator chose."""
    control = next((c for c in controls if c.kind == "BrushLabels"), None)
    control = control or next((c for c in controls if c.kind == "PolygonLabels"), controls[0])
    chosen = label if label is not None else next(iter(control.phrases.values()), "object")
    height, width = mask.shape
    single = Result(
        masks=mask[None],
        boxes=_mask_box(mask),
        labels=[chosen],
        scores=np.array([score], dtype=np.float32),
        mask_scores=np.array([score], dtype=np.float32),
        image_size=(height, width),
    )
    tag = ControlTag(control.name, control.kind, control.to_name, control.data_key, {chosen: chosen})
    return region_results(single, [tag], model_version)


def _mask_box(mask: np.ndarray) -> np.ndarray:
    from grounded_sam.ops.boxes import masks_to_boxes

    return masks_to_boxes(mask[None])
