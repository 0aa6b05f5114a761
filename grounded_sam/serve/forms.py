"""One reader for both request shapes: a multipart form (an ``image`` file) or a JSON body (base64)."""

from __future__ import annotations

import json
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from starlette.datastructures import UploadFile
from starlette.requests import Request

from grounded_sam.serve.errors import ApiError, invalid
from grounded_sam.serve.images import check_size, from_base64

Body = TypeVar("Body", bound=BaseModel)

JSON_FIELDS = frozenset({"points", "point_labels", "boxes"})
"""Form fields that carry JSON (arrays) rather than plain strings."""


async def read_body(request: Request, schema: type[Body], max_image_bytes: int) -> tuple[Body, bytes | None]:
    """The request's fields validated by ``schema`` (422 with the reasons) and its image bytes, if any.

    A multipart form gives the image as the ``image`` file and every other field as a string (arrays as
    JSON, ``classes`` as JSON or comma-separated); a JSON body gives the image as base64 in ``image``.
    """
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind == "application/json":
        fields = await _json_fields(request)
        data = fields.pop("image", None)
        image = None if data is None else from_base64(_string(data, "image"))
    elif kind in ("multipart/form-data", "application/x-www-form-urlencoded"):
        fields, image = await _form_fields(request)
    else:
        raise ApiError(
            415, "unsupported_media_type", "send a multipart form (image file) or a JSON body (base64 image)"
        )
    if image is not None:
        check_size(image, max_image_bytes)
    try:
        return schema.model_validate(fields), image
    except ValidationError as error:
        raise invalid(_reasons(error)) from None


async def _json_fields(request: Request) -> dict[str, Any]:
    try:
        fields = json.loads(await request.body())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise invalid(f"the body is not valid JSON ({error})") from None
    if not isinstance(fields, dict):
        raise invalid("the JSON body must be an object")
    return fields


async def _form_fields(request: Request) -> tuple[dict[str, Any], bytes | None]:
    form = await request.form(max_files=1, max_fields=32)
    fields: dict[str, Any] = {}
    image = None
    for key, value in form.multi_items():
        if isinstance(value, UploadFile):
            if key != "image":
                raise invalid(f"unexpected file field {key!r}; send the image as 'image'")
            image = await value.read()
        elif key == "image":
            raise invalid("'image' must be a file in a multipart form (or base64 in a JSON body)")
        elif key in JSON_FIELDS:
            fields[key] = _parse_json(key, value)
        elif key == "classes":
            fields[key] = _classes(value)
        else:
            fields[key] = value
    await form.close()
    return fields, image


def _parse_json(key: str, value: str) -> Any:
    try:
        return json.loads(value)
    except json.JSONDecodeError as error:
        raise invalid(f"{key} must be JSON, e.g. [[100, 120]]; got {value[:80]!r} ({error})") from None


def _classes(value: str) -> list[str]:
    if value.strip().startswith("["):
        return _parse_json("classes", value)
    return [name.strip() for name in value.split(",") if name.strip()]


def _string(value: Any, key: str) -> str:
    if not isinstance(value, str):
        raise invalid(f"{key} must be a string")
    return value


def _reasons(error: ValidationError) -> str:
    parts = []
    for item in error.errors():
        where = ".".join(str(p) for p in item.get("loc", ()))
        parts.append(f"{where}: {item.get('msg')}" if where else str(item.get("msg")))
    return "; ".join(parts)
