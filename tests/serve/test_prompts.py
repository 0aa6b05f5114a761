"""POST /v1/segment/prompts: clicks and boxes decoded against the cached image embedding."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from tests.serve.conftest import SCENE, SCENE_PNG


@pytest.fixture(scope="module")
def reference_predictor():
    """A plain SamPredictor on the demo SAM, in this process, on the scene."""
    from grounded_sam.sam import SamPredictor, build_sam

    predictor = SamPredictor(build_sam("demo_sam"))
    predictor.set_image(SCENE.image)
    return predictor


def _masks(body: dict) -> np.ndarray:
    return np.stack(
        [
            mask_utils.decode({"size": d["mask"]["size"], "counts": d["mask"]["counts"].encode()}).astype(
                bool
            )
            for d in body["detections"]
        ]
    )


def _other_image() -> bytes:
    from grounded_sam.data import SceneConfig, make_scene
    from tests.serve.server import png_bytes

    return png_bytes(make_scene(8, SceneConfig(size=(200, 260))).image)


def test_a_second_click_hits_the_cache_and_masks_match_sam(client, reference_predictor) -> None:
    other = _other_image()  # a fresh image: the first call must embed it
    other_id = hashlib.sha256(other).hexdigest()
    before = client.get("/health").json()["cache"]
    first = client.post(
        "/v1/segment/prompts",
        files={"image": ("other.png", other)},
        data={"points": "[[100, 80]]", "point_labels": "[1]"},
    )
    assert first.status_code == 200, first.text
    assert first.json()["cache_hit"] is False and first.json()["image_id"] == other_id
    after_first = client.get("/health").json()["cache"]
    assert after_first["misses"] == before["misses"] + 1 and after_first["hits"] == before["hits"]

    second = client.post(
        "/v1/segment/prompts",
        json={"image_id": other_id, "points": [[100, 80], [30, 30]], "point_labels": [1, 0]},
    )
    assert second.status_code == 200, second.text
    assert second.json()["cache_hit"] is True
    after_second = client.get("/health").json()["cache"]
    assert after_second["hits"] == before["hits"] + 1 and after_second["misses"] == before["misses"] + 1


def test_click_and_box_masks_equal_an_in_process_predictor(client, reference_predictor) -> None:
    image_id = hashlib.sha256(SCENE_PNG).hexdigest()
    client.post(  # makes sure the scene is cached whatever ran before
        "/v1/segment/prompts", files={"image": ("s.png", SCENE_PNG)}, data={"boxes": "[[0, 0, 10, 10]]"}
    )
    click = client.post(
        "/v1/segment/prompts",
        json={"image_id": image_id, "points": [[233, 32]], "point_labels": [1], "multimask_output": True},
    ).json()
    assert click["cache_hit"] is True
    masks, scores, _ = reference_predictor.predict(np.array([[233.0, 32.0]]), np.array([1]))
    assert np.array_equal(_masks(click), masks)
    np.testing.assert_allclose([d["mask_score"] for d in click["detections"]], scores, rtol=1e-5)
    assert [d["prompt_index"] for d in click["detections"]] == [0, 0, 0]

    boxes = [[210.0, 10.0, 255.0, 55.0], [20.0, 100.0, 120.0, 200.0]]
    boxed = client.post("/v1/segment/prompts", json={"image_id": image_id, "boxes": boxes}).json()
    expected, _, _ = reference_predictor.predict(box=np.array(boxes), multimask_output=False)
    assert np.array_equal(_masks(boxed), expected[:, 0])
    assert [d["prompt_index"] for d in boxed["detections"]] == [0, 1]
    assert all(d["label"] is None for d in boxed["detections"])


def test_the_least_recently_used_embedding_is_dropped(client) -> None:
    """The server keeps 2 embeddings (--cache-images 2): a third image pushes out the oldest."""
    from grounded_sam.data import SceneConfig, make_scene
    from tests.serve.server import png_bytes

    images = [png_bytes(make_scene(seed, SceneConfig(size=(96, 128))).image) for seed in (41, 42, 43)]
    for data in images:
        sent = client.post(
            "/v1/segment/prompts", files={"image": ("i.png", data)}, data={"boxes": "[[1,1,50,50]]"}
        )
        assert sent.status_code == 200, sent.text
    assert client.get("/health").json()["cache"]["size"] == 2
    oldest = hashlib.sha256(images[0]).hexdigest()
    gone = client.post("/v1/segment/prompts", json={"image_id": oldest, "boxes": [[1, 1, 50, 50]]})
    assert gone.status_code == 404 and gone.json()["error"]["code"] == "unknown_image"
    newest = hashlib.sha256(images[2]).hexdigest()
    kept = client.post("/v1/segment/prompts", json={"image_id": newest, "boxes": [[1, 1, 50, 50]]})
    assert kept.status_code == 200 and kept.json()["cache_hit"] is True


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        ({"points": [[1, 2]]}, "point_labels"),
        ({"points": [[1, 2]], "point_labels": [3]}, "point_labels"),
        ({"points": [[1, 2, 3]], "point_labels": [1]}, "points"),
        ({"points": [[1, 2], [3]], "point_labels": [1, 1]}, "points"),
        ({"boxes": [[10, 10, 5, 20]]}, "x1 > x0"),
        ({"boxes": [[0, 0, 5, 5], [1, 1, 6, 6]], "points": [[2, 2]], "point_labels": [1]}, "one box"),
        ({}, "give points"),
        ({"boxes": [[0, 0, 5, 5]], "multimask_output": "maybe"}, "multimask_output"),
        ({"boxes": [[0, 0, 5, 5]], "colour": "red"}, "colour"),
    ],
)
def test_bad_prompts_are_422(client, payload, reason) -> None:
    answer = client.post("/v1/segment/prompts", json={"image_id": "0" * 64, **payload})
    assert answer.status_code == 422, answer.text
    error = answer.json()["error"]
    assert error["code"] == "invalid_parameter" and reason in error["message"]
