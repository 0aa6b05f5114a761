"""POST /v1/segment, /v1/models, /health and /docs of a real server, through a real HTTP client."""

from __future__ import annotations

import base64
import hashlib
import io
import re

import numpy as np
from PIL import Image
from pycocotools import mask as mask_utils

from tests.serve.conftest import API_KEY, SCENE_PNG


def _rle_masks(detections: list[dict]) -> np.ndarray:
    rles = [{"size": d["mask"]["size"], "counts": d["mask"]["counts"].encode()} for d in detections]
    return np.stack([mask_utils.decode(rle).astype(bool) for rle in rles])


def test_masks_are_those_of_grounded_sam_predict(client, scene_prediction) -> None:
    answer = client.post(
        "/v1/segment", files={"image": ("scene.png", SCENE_PNG, "image/png")}, data={"prompt": "shapes"}
    )
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert (body["width"], body["height"]) == (320, 240)
    assert body["image_id"] == hashlib.sha256(SCENE_PNG).hexdigest()
    detections = body["detections"]
    expected = scene_prediction
    assert len(detections) == len(expected) > 0
    assert [d["label"] for d in detections] == list(expected.labels) == ["shapes"] * len(expected)
    assert all(d["mask"]["size"] == [240, 320] for d in detections)
    assert np.array_equal(_rle_masks(detections), expected.masks)
    np.testing.assert_allclose([d["box"] for d in detections], expected.boxes, atol=1e-4)
    np.testing.assert_allclose([d["score"] for d in detections], expected.scores, rtol=1e-6)
    np.testing.assert_allclose([d["mask_score"] for d in detections], expected.mask_scores, rtol=1e-6)


def test_json_body_with_polygons(client, scene_prediction) -> None:
    payload = {"image": base64.b64encode(SCENE_PNG).decode(), "prompt": "shapes", "mask_format": "polygon"}
    answer = client.post("/v1/segment", json=payload)
    assert answer.status_code == 200, answer.text
    detections = answer.json()["detections"]
    assert len(detections) == len(scene_prediction)
    for detection, mask in zip(detections, scene_prediction.masks, strict=True):
        polygons = detection["mask"]
        assert polygons and all(len(p) >= 6 and len(p) % 2 == 0 for p in polygons)
        xy = np.concatenate([np.reshape(p, (-1, 2)) for p in polygons])
        assert (xy >= 0).all() and (xy <= [320, 240]).all()  # clipped to the image
        drawn = mask_utils.decode(mask_utils.merge(mask_utils.frPyObjects(polygons, 240, 320))).astype(bool)
        iou = (drawn & mask).sum() / (drawn | mask).sum()
        assert iou > 0.9, iou  # outlines simplified at one pixel


def test_no_phrase_and_mask_format_none_give_well_formed_answers(client) -> None:
    answer = client.post("/v1/segment", files={"image": ("s.png", SCENE_PNG)}, data={"prompt": " . , "})
    assert answer.status_code == 200, answer.text
    assert answer.json()["detections"] == []


def test_png_masks_from_the_prompt_endpoint_decode_to_the_rle_ones(client) -> None:
    common = {"points": "[[233, 32]]", "point_labels": "[1]", "multimask_output": "true"}
    files = {"image": ("scene.png", SCENE_PNG, "image/png")}
    as_png = client.post("/v1/segment/prompts", files=files, data={**common, "mask_format": "png"}).json()
    as_rle = client.post("/v1/segment/prompts", files=files, data={**common, "mask_format": "rle"}).json()
    pngs = [
        np.asarray(Image.open(io.BytesIO(base64.b64decode(d["mask"])))) != 0 for d in as_png["detections"]
    ]
    assert len(pngs) == 3 and pngs[0].shape == (240, 320)
    assert np.array_equal(np.stack(pngs), _rle_masks(as_rle["detections"]))


def test_models_health_and_docs(client, server) -> None:
    models = client.get("/v1/models").json()["models"]
    assert len(models) == 1 and models[0]["interactive"] is True
    assert models[0]["predictor_class"] == "ZoomPredictor" and models[0]["settings"]["box_threshold"] > 0
    health = client.get("/health").json()
    assert health["status"] == "ok" and set(health["cache"]) >= {"hits", "misses", "size", "capacity"}
    docs = client.get("/docs")
    assert docs.status_code == 200 and "swagger" in docs.text.lower()
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/v1/segment", "/v1/segment/prompts", "/v1/everything", "/label-studio/predict"} <= set(paths)


def test_everything_with_classes(client) -> None:
    answer = client.post(
        "/v1/everything",
        files={"image": ("scene.png", SCENE_PNG)},
        data={"classes": "orange hexagon,red cross", "mask_format": "none"},
    )
    assert answer.status_code == 200, answer.text
    labels = [d["label"] for d in answer.json()["detections"]]
    assert labels and set(labels) <= {"orange hexagon", "red cross", "no label"}
    assert "orange hexagon" in labels


def test_access_log_has_one_line_per_request_and_no_image_data(client, server) -> None:
    client.get("/v1/models")
    log = server.log_text()
    lines = [line for line in log.splitlines() if "grounded_sam.serve.access" in line]
    assert any(re.search(r"POST /v1/segment 200 [\d.]+ ms detections=[1-9]\d*$", line) for line in lines)
    assert any("GET /v1/models 200" in line for line in lines)
    assert base64.b64encode(SCENE_PNG[:60]).decode()[:40] not in log
    assert API_KEY not in log
