"""The HTTP API: ``/health``, ``/v1/models``, ``/v1/segment``, ``/v1/segment/prompts``, ``/v1/everything``."""

from __future__ import annotations

from typing import Any

import numpy as np
from fastapi import APIRouter, Depends, Request
from starlette.concurrency import run_in_threadpool

from grounded_sam.ops.boxes import masks_to_boxes
from grounded_sam.result import Result
from grounded_sam.serve.access_log import DETECTIONS_KEY
from grounded_sam.serve.auth import check_key
from grounded_sam.serve.errors import invalid
from grounded_sam.serve.forms import read_body
from grounded_sam.serve.images import RequestImage, decode
from grounded_sam.serve.masks import MaskFormat, encode_masks
from grounded_sam.serve.models import ModelRegistry, PromptMasks
from grounded_sam.serve.schemas import (
    EverythingFields,
    HealthResponse,
    ModelsResponse,
    PromptsFields,
    SegmentFields,
    SegmentResponse,
)

MULTIPART_OR_JSON = {
    "requestBody": {
        "content": {
            "multipart/form-data": {
                "schema": {"type": "object", "properties": {"image": {"type": "string", "format": "binary"}}}
            },
            "application/json": {
                "schema": {"type": "object", "properties": {"image": {"type": "string", "format": "base64"}}}
            },
        },
        "description": "The image as a multipart file `image`, or base64 `image` in a JSON body; the "
        "other fields as form fields (arrays as JSON) or JSON members.",
    }
}


def registry_of(request: Request) -> ModelRegistry:
    return request.app.state.registry


def require_key(request: Request) -> None:
    check_key(request, request.app.state.api_key)


health_router = APIRouter()
router = APIRouter(prefix="/v1", dependencies=[Depends(require_key)])


@health_router.get("/health", response_model=HealthResponse)
def health(request: Request) -> dict[str, Any]:
    """Liveness and load: the queue of the model worker and the embedding cache's hit counters."""
    registry = registry_of(request)
    return {
        "status": "ok",
        "model": registry.name,
        "queue": registry.worker.stats(),
        "cache": registry.cache.stats(),
    }


@router.get("/models", response_model=ModelsResponse)
def models(request: Request) -> dict[str, Any]:
    """The loaded pipeline and its settings."""
    return {"models": [registry_of(request).describe()]}


@router.post("/segment", response_model=SegmentResponse, openapi_extra=MULTIPART_OR_JSON)
async def segment(request: Request) -> dict[str, Any]:
    """Text -> masks: the masks ``grounded_sam.predict`` gives for the image and the prompt."""
    registry = registry_of(request)
    fields, data = await read_body(request, SegmentFields, registry.config.max_image_bytes)
    image = await _decoded(registry, data)
    result = await registry.worker.run(
        lambda: registry.segment(
            image.pixels, image.image_id, fields.prompt, fields.box_threshold, fields.text_threshold
        )
    )
    detections = await run_in_threadpool(result_detections, result, fields.mask_format)
    return _answer(request, image.image_id, image.size, detections)


@router.post("/segment/prompts", response_model=SegmentResponse, openapi_extra=MULTIPART_OR_JSON)
async def segment_prompts(request: Request) -> dict[str, Any]:
    """Clicks and boxes -> masks, decoded against the image's cached embedding (computed on a miss)."""
    registry = registry_of(request)
    fields, data = await read_body(request, PromptsFields, registry.config.max_image_bytes)
    points, labels, boxes = prompt_arrays(fields)
    image = await _decoded(registry, data) if data is not None else None
    if image is None and fields.image_id is None:
        raise invalid("send an image, or the image_id of one sent before")
    image_id = image.image_id if image is not None else str(fields.image_id)
    found = await registry.worker.run(
        lambda: registry.prompt_masks(
            image_id, None if image is None else image.pixels, points, labels, boxes, fields.multimask_output
        )
    )
    detections = await run_in_threadpool(prompt_detections, found, fields.mask_format)
    size = (int(found.masks.shape[1]), int(found.masks.shape[2]))
    return _answer(request, image_id, size, detections, cache_hit=found.cache_hit)


@router.post("/everything", response_model=SegmentResponse, openapi_extra=MULTIPART_OR_JSON)
async def everything(request: Request) -> dict[str, Any]:
    """Segment everything; with ``classes``, each mask named by CLIP (or ``"no label"``)."""
    registry = registry_of(request)
    fields, data = await read_body(request, EverythingFields, registry.config.max_image_bytes)
    image = await _decoded(registry, data)
    classes = fields.classes
    if classes is not None and not [name for name in classes if name.strip()]:
        raise invalid("classes is empty; leave it out to segment without names")
    result = await registry.worker.run(lambda: registry.everything(image.pixels, classes))
    detections = await run_in_threadpool(result_detections, result, fields.mask_format)
    return _answer(request, image.image_id, image.size, detections)


async def _decoded(registry: ModelRegistry, data: bytes | None) -> RequestImage:
    if data is None:
        raise invalid("image is required: a multipart file 'image', or base64 'image' in a JSON body")
    config = registry.config
    return await run_in_threadpool(decode, data, config.max_image_bytes, config.max_pixels)


def _answer(
    request: Request,
    image_id: str,
    size: tuple[int, int],
    detections: list[dict[str, Any]],
    cache_hit: bool | None = None,
) -> dict[str, Any]:
    setattr(request.state, DETECTIONS_KEY, len(detections))
    height, width = size
    answer = {"width": width, "height": height, "image_id": image_id, "detections": detections}
    if cache_hit is not None:
        answer["cache_hit"] = cache_hit
    return answer


def result_detections(result: Result, mask_format: MaskFormat) -> list[dict[str, Any]]:
    """A :class:`Result`'s instances as the API's detection dicts, masks encoded in ``mask_format``."""
    masks = encode_masks(result.masks, mask_format)
    return detections(result.labels, result.scores, result.mask_scores, result.boxes, masks)


def prompt_detections(found: PromptMasks, mask_format: MaskFormat) -> list[dict[str, Any]]:
    """Click-prompt masks as detection dicts: no label, the mask's tight box, SAM's predicted IoU."""
    masks = encode_masks(found.masks, mask_format)
    labels = [None] * len(masks)
    boxes = masks_to_boxes(found.masks)
    return detections(labels, found.scores, found.scores, boxes, masks, found.prompt_index)


def detections(
    labels: list[str] | list[None],
    scores: np.ndarray,
    mask_scores: np.ndarray,
    boxes: np.ndarray,
    masks: list[Any],
    prompt_index: np.ndarray | None = None,
) -> list[dict[str, Any]]:
    """Detection dicts from columns: (N,) labels and scores, (N, 4) XYXY boxes, N encoded masks."""
    found = []
    for i, (label, mask) in enumerate(zip(labels, masks, strict=True)):
        detection = {
            "label": label,
            "score": float(scores[i]),
            "mask_score": float(mask_scores[i]),
            "box": [float(v) for v in boxes[i]],
            "mask": mask,
        }
        if prompt_index is not None:
            detection["prompt_index"] = int(prompt_index[i])
        found.append(detection)
    return found


def prompt_arrays(fields: PromptsFields) -> tuple[np.ndarray | None, np.ndarray | None, np.ndarray | None]:
    """Points (P, 2), labels (P,) and boxes (N, 4) as float32 / int64 arrays, checked (422 if wrong)."""
    points = labels = boxes = None
    if (fields.points is None) != (fields.point_labels is None):
        raise invalid("points and point_labels go together: one label (1 or 0) per point")
    if fields.points is not None:
        points = _array(fields.points, np.float32, "points")
        labels = _array(fields.point_labels, np.int64, "point_labels")
        if points.ndim != 2 or points.shape[1] != 2 or len(points) == 0:
            raise invalid(f"points must be [[x, y], ...] with at least one point; got shape {points.shape}")
        if labels.shape != (len(points),) or not np.isin(labels, (0, 1)).all():
            raise invalid("point_labels must hold one 1 (foreground) or 0 (background) per point")
    if fields.boxes is not None:
        boxes = _array(fields.boxes, np.float32, "boxes")
        if boxes.ndim != 2 or boxes.shape[1] != 4 or len(boxes) == 0:
            raise invalid(f"boxes must be [[x0, y0, x1, y1], ...]; got shape {boxes.shape}")
        if not (boxes[:, 2:] > boxes[:, :2]).all():
            raise invalid("every box needs x1 > x0 and y1 > y0")
        if points is not None and len(boxes) > 1:
            raise invalid("points can go with one box, not several; send one request per box")
    if points is None and boxes is None:
        raise invalid("give points (with point_labels) or boxes")
    for name, array in (("points", points), ("boxes", boxes)):
        if array is not None and not np.isfinite(array).all():
            raise invalid(f"{name} must be finite numbers")
    return points, labels, boxes


def _array(value: Any, dtype: type, name: str) -> np.ndarray:
    try:
        return np.asarray(value, dtype=dtype)
    except (ValueError, TypeError):
        raise invalid(f"{name} must be a rectangular array of numbers") from None
