"""The Label Studio ML backend protocol, mounted under ``/label-studio``: ``GET /health``, ``POST /setup``,
``POST /predict``, ``POST /webhook`` (accepted, no training) and ``GET /metrics``.

Connect it in Label Studio (project settings -> Model) as ``http://HOST:PORT/label-studio``; with
``--api-key-env``, give the key as the basic-auth password.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Depends, Request
from starlette.concurrency import run_in_threadpool

from grounded_sam import __version__
from grounded_sam.serve.access_log import DETECTIONS_KEY
from grounded_sam.serve.errors import invalid
from grounded_sam.serve.images import decode
from grounded_sam.serve.label_studio import (
    ClickContext,
    ControlTag,
    click_context,
    click_result,
    parse_label_config,
    prediction,
    region_results,
)
from grounded_sam.serve.models import ModelRegistry
from grounded_sam.serve.routes import require_key
from grounded_sam.serve.task_images import TaskImageSource

label_studio_router = APIRouter(dependencies=[Depends(require_key)], tags=["Label Studio"])


def model_version(registry: ModelRegistry) -> str:
    return f"grounded-sam-{__version__}-{registry.name}"


@label_studio_router.get("/")
@label_studio_router.get("/health")
def ls_health(request: Request) -> dict[str, Any]:
    """Label Studio's liveness check."""
    return {"status": "UP", "model_class": "GroundedSAM", "model_version": model_version(_registry(request))}


@label_studio_router.post("/setup")
async def ls_setup(request: Request) -> dict[str, Any]:
    """Label Studio connects a project: its labelling config (``schema``) is checked and the model
    version answered."""
    body = await _json(request)
    schema = body.get("schema")
    if isinstance(schema, str) and schema.strip():
        parse_label_config(schema)
    return {"model_version": model_version(_registry(request))}


@label_studio_router.post("/predict")
async def ls_predict(request: Request) -> dict[str, Any]:
    """``{"tasks": [...], "label_config": ...}`` -> ``{"results": [one prediction per task]}``."""
    body = await _json(request)
    tasks, label_config = body.get("tasks"), body.get("label_config")
    if not isinstance(tasks, list) or not all(isinstance(task, dict) for task in tasks):
        raise invalid("tasks must be a list of task objects")
    if not isinstance(label_config, str):
        raise invalid("label_config (the project's labelling config, XML) is required")
    controls = parse_label_config(label_config)
    params = body.get("params") or {}
    click = click_context(params.get("context") if isinstance(params, dict) else None)
    registry = _registry(request)
    results = []
    for task in tasks:
        results.append(await _predict_task(request, registry, task, controls, click))
    setattr(request.state, DETECTIONS_KEY, sum(len(r["result"]) for r in results))
    return {"results": results}


@label_studio_router.post("/webhook")
async def ls_webhook(request: Request) -> dict[str, Any]:
    """Annotation events: accepted; this backend does not train."""
    await _json(request)
    return {"status": "ok", "trained": False}


@label_studio_router.get("/metrics")
def ls_metrics() -> dict[str, Any]:
    return {}


async def _predict_task(
    request: Request,
    registry: ModelRegistry,
    task: dict[str, Any],
    controls: list[ControlTag],
    click: ClickContext | None,
) -> dict[str, Any]:
    version = model_version(registry)
    data = task.get("data") or {}
    url = data.get(controls[0].data_key)
    if not isinstance(url, str) or not url:
        raise invalid(f"task {task.get('id')} has no image in data.{controls[0].data_key}")
    source: TaskImageSource = request.app.state.task_images
    config = registry.config
    image = await run_in_threadpool(decode, await source.read(url), config.max_image_bytes, config.max_pixels)
    if click is not None:
        boxes = None if click.box is None else click.box[None]
        found = await registry.worker.run(
            lambda: registry.prompt_masks(
                image.image_id, image.pixels, click.points, click.point_labels, boxes, False
            )
        )
        return await run_in_threadpool(
            click_result, found.masks[0], float(found.scores[0]), controls, click.label, version
        )
    phrases = sorted({phrase for control in controls for phrase in control.phrases})
    if not phrases:
        return prediction([], version)
    result = await registry.worker.run(
        lambda: registry.segment(image.pixels, image.image_id, ". ".join(phrases))
    )
    return await run_in_threadpool(region_results, result, controls, version)


def _registry(request: Request) -> ModelRegistry:
    return request.app.state.registry


async def _json(request: Request) -> dict[str, Any]:
    try:
        body = json.loads(await request.body() or b"{}")
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise invalid(f"the body is not valid JSON ({error})") from None
    if not isinstance(body, dict):
        raise invalid("the JSON body must be an object")
    return body
