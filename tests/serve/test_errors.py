"""Every error status of the API, as JSON, and a server that stays healthy through them."""

from __future__ import annotations

import asyncio
import base64
import io

import httpx
import numpy as np
import pytest
from PIL import Image

from tests.serve.conftest import API_KEY, MAX_IMAGE_MB, SCENE_PNG


def _error(answer: httpx.Response, status: int, code: str) -> str:
    assert answer.status_code == status, answer.text
    error = answer.json()["error"]
    assert error["code"] == code
    return error["message"]


def _bomb() -> bytes:
    """A 10,000 x 10,000 PNG (100 megapixels) of one colour: a few hundred KB on disk."""
    buffer = io.BytesIO()
    Image.new("1", (10_000, 10_000)).save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


@pytest.mark.parametrize(
    "data",
    [b"not an image at all", SCENE_PNG[: len(SCENE_PNG) // 2], b"\x89PNG\r\n\x1a\n" + b"\0" * 64, b""],
    ids=["garbage", "truncated", "bad-png-header", "empty"],
)
def test_unreadable_images_are_400(client, data) -> None:
    answer = client.post("/v1/segment", files={"image": ("x.png", data)}, data={"prompt": "shapes"})
    message = _error(answer, 400, "bad_image")
    assert "image" in message


def test_bad_base64_is_400(client) -> None:
    _error(client.post("/v1/segment", json={"image": "%%%not base64", "prompt": "x"}), 400, "bad_image")


def test_over_the_size_limit_is_413_before_decoding(client) -> None:
    big = SCENE_PNG + b"\0" * int(MAX_IMAGE_MB * 2**20)  # a valid PNG with trailing bytes
    message = _error(
        client.post("/v1/segment", files={"image": ("b.png", big)}, data={"prompt": "x"}), 413, "too_large"
    )
    assert "limit is 1 MB" in message
    huge = b"\0" * int(3 * MAX_IMAGE_MB * 2**20)  # over the whole-body limit: refused before reading
    _error(
        client.post("/v1/segment", files={"image": ("h.png", huge)}, data={"prompt": "x"}), 413, "too_large"
    )


def test_decompression_bomb_is_413(client) -> None:
    bomb = _bomb()
    assert len(bomb) < MAX_IMAGE_MB * 2**20
    message = _error(
        client.post("/v1/segment", files={"image": ("b.png", bomb)}, data={"prompt": "x"}), 413, "too_large"
    )
    assert "10000x10000" in message


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"prompt": "x", "box_threshold": "1.5"}, "box_threshold"),
        ({"prompt": "x", "text_threshold": "high"}, "text_threshold"),
        ({"prompt": "x", "mask_format": "jpeg"}, "mask_format"),
        ({}, "prompt"),
    ],
)
def test_bad_parameters_are_422(client, fields, reason) -> None:
    answer = client.post("/v1/segment", files={"image": ("s.png", SCENE_PNG)}, data=fields)
    assert reason in _error(answer, 422, "invalid_parameter")


def test_missing_image_and_bad_bodies(client) -> None:
    assert "image is required" in _error(
        client.post("/v1/segment", data={"prompt": "x"}), 422, "invalid_parameter"
    )
    _error(
        client.post("/v1/segment", content=b"{nope", headers={"Content-Type": "application/json"}),
        422,
        "invalid_parameter",
    )
    _error(
        client.post("/v1/segment", content=b"raw", headers={"Content-Type": "image/png"}),
        415,
        "unsupported_media_type",
    )
    _error(client.get("/v1/nothing-here"), 404, "not_found")
    _error(client.get("/v1/segment"), 405, "method_not_allowed")


def test_api_key_is_required(server) -> None:
    segment = {"files": {"image": ("s.png", SCENE_PNG)}, "data": {"prompt": "x"}}
    assert httpx.post(f"{server.url}/v1/segment", **segment).status_code == 401
    wrong = httpx.post(f"{server.url}/v1/segment", headers={"X-API-Key": "nope"}, **segment)
    assert "wrong" in _error(wrong, 401, "unauthorized")
    assert httpx.get(f"{server.url}/v1/models").status_code == 401
    bearer = httpx.get(f"{server.url}/v1/models", headers={"Authorization": f"Bearer {API_KEY}"})
    assert bearer.status_code == 200
    basic = httpx.get(f"{server.url}/label-studio/health", auth=("labelstudio", API_KEY))
    assert basic.status_code == 200 and basic.json()["status"] == "UP"
    assert httpx.get(f"{server.url}/label-studio/health", auth=("x", "bad")).status_code == 401
    assert httpx.get(f"{server.url}/health").status_code == 200  # liveness stays open


def test_a_full_queue_answers_503_at_once_and_the_server_recovers(client, server) -> None:
    """--max-queue 0: while one model call runs, every other request is refused, not queued."""
    rejected_before = client.get("/health").json()["queue"]["rejected"]

    async def burst() -> list[httpx.Response]:
        async with httpx.AsyncClient(
            base_url=server.url, headers={"X-API-Key": API_KEY}, timeout=600
        ) as session:
            calls = [
                session.post("/v1/segment", files={"image": ("s.png", SCENE_PNG)}, data={"prompt": "shapes"})
                for _ in range(5)
            ]
            return await asyncio.gather(*calls)

    answers = asyncio.run(burst())
    statuses = sorted(a.status_code for a in answers)
    assert statuses.count(200) >= 1 and statuses.count(503) >= 1 and set(statuses) == {200, 503}, statuses
    busy = next(a for a in answers if a.status_code == 503)
    assert "busy" in _error(busy, 503, "busy") and busy.headers["Retry-After"] == "1"
    health = client.get("/health").json()
    assert health["status"] == "ok" and health["queue"]["rejected"] == rejected_before + statuses.count(503)
    assert health["queue"]["running"] == 0 and health["queue"]["waiting"] == 0
    again = client.post("/v1/segment", files={"image": ("s.png", SCENE_PNG)}, data={"prompt": "shapes"})
    assert again.status_code == 200 and len(again.json()["detections"]) > 0


def test_still_healthy_after_the_errors(client) -> None:
    assert client.get("/health").json()["status"] == "ok"
    pixels = np.asarray(Image.open(io.BytesIO(SCENE_PNG)))
    assert pixels.shape == (240, 320, 3)
    answer = client.post(
        "/v1/segment", json={"image": base64.b64encode(SCENE_PNG).decode(), "prompt": "red cross"}
    )
    assert answer.status_code == 200
