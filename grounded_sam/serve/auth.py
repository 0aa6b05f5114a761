"""An optional API key, read from an environment variable, checked in constant time."""

from __future__ import annotations

import base64
import binascii
import hmac

from starlette.requests import Request

from grounded_sam.serve.errors import ApiError

API_KEY_HEADER = "X-API-Key"


def presented_key(request: Request) -> str | None:
    """The key a request carries: ``X-API-Key``, ``Authorization: Bearer KEY`` or ``Token KEY``, or the
    password of HTTP basic auth (how Label Studio authenticates to an ML backend)."""
    header = request.headers.get(API_KEY_HEADER)
    if header:
        return header
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() in ("bearer", "token") and value:
        return value.strip()
    if scheme.lower() == "basic" and value:
        try:
            _, _, password = base64.b64decode(value.strip(), validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return None
        return password or None
    return None


def check_key(request: Request, expected: str | None) -> None:
    """Raise a 401 :class:`ApiError` unless ``expected`` is ``None`` or the request carries it."""
    if expected is None:
        return
    key = presented_key(request)
    if key is None:
        raise ApiError(401, "unauthorized", f"an API key is required: send it as {API_KEY_HEADER}")
    if not hmac.compare_digest(key.encode(), expected.encode()):
        raise ApiError(401, "unauthorized", "the API key is wrong")
