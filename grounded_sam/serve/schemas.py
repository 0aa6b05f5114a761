"""Request bodies and answers of the HTTP API (they are also what ``/docs`` shows)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from grounded_sam.serve.masks import MaskFormat


class Detection(BaseModel):
    """One mask. ``box`` is XYXY in image pixels (far edges exclusive for mask boxes); ``mask`` is a
    COCO RLE ``{"size": [H, W], "counts": str}``, a base64 PNG, a list of flat ``[x, y, ...]``
    polygons, or ``null``, as ``mask_format`` asked."""

    label: str | None = Field(description="One of the prompt's phrases (null for click prompts).")
    score: float = Field(description="Detector confidence (predicted IoU for click prompts).")
    mask_score: float = Field(description="SAM's predicted IoU of the mask.")
    box: list[float] = Field(description="[x0, y0, x1, y1] in pixels.")
    mask: Any = None
    prompt_index: int | None = Field(default=None, description="Which prompt a click mask answers.")


class SegmentResponse(BaseModel):
    width: int
    height: int
    image_id: str = Field(description="sha256 of the image bytes; send it back to /v1/segment/prompts.")
    detections: list[Detection]
    cache_hit: bool | None = Field(default=None, description="Whether the image embedding was cached.")


class _Fields(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SegmentFields(_Fields):
    """Fields of ``POST /v1/segment`` besides the image (a form file, or base64 ``image`` in JSON)."""

    prompt: str = Field(description='Phrases, e.g. "red circle. blue square".')
    box_threshold: float | None = Field(default=None, ge=0, le=1)
    text_threshold: float | None = Field(default=None, ge=0, le=1)
    mask_format: MaskFormat = "rle"


class PromptsFields(_Fields):
    """Fields of ``POST /v1/segment/prompts`` besides the image: the id of an image sent before may
    replace it."""

    image_id: str | None = None
    points: list[list[float]] | None = Field(default=None, description="[[x, y], ...] in pixels.")
    point_labels: list[int] | None = Field(default=None, description="1 foreground, 0 background.")
    boxes: list[list[float]] | None = Field(default=None, description="[[x0, y0, x1, y1], ...] in pixels.")
    multimask_output: bool = False
    mask_format: MaskFormat = "rle"


class EverythingFields(_Fields):
    """Fields of ``POST /v1/everything`` besides the image."""

    classes: list[str] | None = None
    mask_format: MaskFormat = "rle"


class ModelsResponse(BaseModel):
    models: list[dict[str, Any]]


class HealthResponse(BaseModel):
    status: str
    model: str
    queue: dict[str, int]
    cache: dict[str, int]
