"""The Label Studio ML backend under /label-studio, spoken to as Label Studio does; brush masks decoded
with label_studio_sdk's converter."""

from __future__ import annotations

import numpy as np
import pytest
from label_studio_sdk.converter import brush

from tests.serve.conftest import SCENE

CONFIG = """
<View>
  <Image name="image" value="$image"/>
  <BrushLabels name="brush" toName="image">
    <Label value="Ring" predicted_values="green ring"/>
    <Label value="Cross" hint="red cross"/>
  </BrushLabels>
  <PolygonLabels name="outline" toName="image">
    <Label value="Ring" predicted_values="green ring"/>
  </PolygonLabels>
  <RectangleLabels name="box" toName="image">
    <Label value="Cross" predicted_values="red cross"/>
  </RectangleLabels>
  <KeyPointLabels name="click" toName="image" smart="true">
    <Label value="Ring"/>
  </KeyPointLabels>
</View>
"""


def _brush_mask(region: dict) -> np.ndarray:
    height, width = region["original_height"], region["original_width"]
    return brush.decode_rle(region["value"]["rle"]).reshape(height, width, 4)[..., 3] == 255


@pytest.fixture(scope="module")
def text_prediction():
    """What grounded_sam.predict gives for the phrases the config asks for (sorted, as the backend asks)."""
    import grounded_sam

    return grounded_sam.predict(SCENE.image, "green ring. red cross")


def test_health_setup_metrics_and_webhook(client) -> None:
    health = client.get("/label-studio/health").json()
    assert health["status"] == "UP" and health["model_version"].startswith("grounded-sam-")
    assert client.get("/label-studio/").json()["status"] == "UP"
    setup = client.post("/label-studio/setup", json={"project": "1.1700000000", "schema": CONFIG})
    assert setup.status_code == 200 and setup.json()["model_version"] == health["model_version"]
    bad = client.post("/label-studio/setup", json={"project": "1.1", "schema": "<View><Image"})
    assert bad.status_code == 422 and "XML" in bad.json()["error"]["message"]
    assert client.get("/label-studio/metrics").json() == {}
    assert (
        client.post("/label-studio/webhook", json={"action": "ANNOTATION_CREATED"}).json()["status"] == "ok"
    )


def test_predict_gives_label_studio_labels_and_the_pipeline_masks(client, text_prediction) -> None:
    tasks = [{"id": 7, "data": {"image": "/data/local-files/?d=scenes/scene.png"}}]
    answer = client.post(
        "/label-studio/predict", json={"tasks": tasks, "label_config": CONFIG, "project": "1.1"}
    )
    assert answer.status_code == 200, answer.text
    (prediction,) = answer.json()["results"]
    assert prediction["model_version"].startswith("grounded-sam-") and 0 < prediction["score"] <= 1
    regions = prediction["result"]
    expected = text_prediction
    assert len(expected) >= 2 and set(expected.labels) == {"green ring", "red cross"}
    names = {"green ring": "Ring", "red cross": "Cross"}

    brushes = [r for r in regions if r["type"] == "brushlabels"]
    assert [r["value"]["brushlabels"] for r in brushes] == [[names[label]] for label in expected.labels]
    assert all(r["from_name"] == "brush" and r["to_name"] == "image" for r in brushes)
    assert all((r["original_width"], r["original_height"]) == (320, 240) for r in brushes)
    decoded = np.stack([_brush_mask(r) for r in brushes])
    assert np.array_equal(decoded, expected.masks)

    rings = [i for i, label in enumerate(expected.labels) if label == "green ring"]
    polygons = [r for r in regions if r["type"] == "polygonlabels"]
    assert polygons and all(r["value"]["polygonlabels"] == ["Ring"] for r in polygons)
    for region in polygons:
        points = np.array(region["value"]["points"])
        assert points.shape[1] == 2 and (points >= 0).all() and (points <= 100).all()

    crosses = [i for i, label in enumerate(expected.labels) if label == "red cross"]
    rectangles = [r for r in regions if r["type"] == "rectanglelabels"]
    assert len(rectangles) == len(crosses) and len(polygons) >= len(rings)
    for region, index in zip(rectangles, crosses, strict=True):
        value = region["value"]
        x0, y0, x1, y1 = expected.boxes[index]
        assert value["rectanglelabels"] == ["Cross"]
        np.testing.assert_allclose(
            [value["x"], value["y"], value["width"], value["height"]],
            [100 * x0 / 320, 100 * y0 / 240, 100 * (x1 - x0) / 320, 100 * (y1 - y0) / 240],
            rtol=1e-5,
        )


def test_interactive_click_answers_the_sam_mask_from_label_studio_storage(client) -> None:
    from grounded_sam.sam import SamPredictor, build_sam

    context = {
        "result": [
            {
                "original_width": 320,
                "original_height": 240,
                "image_rotation": 0,
                "value": {
                    "x": 100 * 233 / 320,
                    "y": 100 * 32 / 240,
                    "width": 0.5,
                    "keypointlabels": ["Ring"],
                },
                "is_positive": True,
                "id": "k1",
                "from_name": "click",
                "to_name": "image",
                "type": "keypointlabels",
                "origin": "manual",
            }
        ]
    }
    tasks = [{"id": 9, "data": {"image": "/data/upload/1/scene.png"}}]  # fetched with the token
    body = {"tasks": tasks, "label_config": CONFIG, "params": {"context": context}}
    answer = client.post("/label-studio/predict", json=body)
    assert answer.status_code == 200, answer.text
    (region,) = answer.json()["results"][0]["result"]
    assert region["type"] == "brushlabels" and region["value"]["brushlabels"] == ["Ring"]
    predictor = SamPredictor(build_sam("demo_sam"))
    predictor.set_image(SCENE.image)
    masks, _, _ = predictor.predict(np.array([[233.0, 32.0]]), np.array([1]), multimask_output=False)
    assert np.array_equal(_brush_mask(region), masks[0])


@pytest.mark.parametrize(
    ("image", "status", "code"),
    [
        ("../outside.png", 403, "forbidden_path"),
        ("/etc/passwd", 400, "bad_image"),  # read as a path under --files-root, where it does not exist
        ("/data/local-files/?d=../../etc/hostname", 403, "forbidden_path"),
        ("scenes/missing.png", 400, "bad_image"),
        ("ftp://example.org/a.png", 400, "bad_image"),
        ("/data/upload/1/missing.png", 400, "bad_image"),
    ],
)
def test_task_images_outside_the_root_or_missing_are_refused(client, image, status, code) -> None:
    body = {"tasks": [{"id": 1, "data": {"image": image}}], "label_config": CONFIG}
    answer = client.post("/label-studio/predict", json=body)
    assert answer.status_code == status, answer.text
    assert answer.json()["error"]["code"] == code


def test_http_task_images_are_fetched(client, storage) -> None:
    config = (
        '<View><Image name="img" value="$photo"/><BrushLabels name="b" toName="img">'
        '<Label value="X" predicted_values="zebra"/></BrushLabels></View>'
    )
    body = {"tasks": [{"id": 1, "data": {"photo": f"{storage}/public/scene.png"}}], "label_config": config}
    answer = client.post("/label-studio/predict", json=body)
    assert answer.status_code == 200, answer.text
    assert answer.json()["results"] == [
        {"result": [], "score": 0.0, "model_version": answer.json()["results"][0]["model_version"]}
    ]
    missing = {
        "tasks": [{"id": 1, "data": {"photo": f"{storage}/public/nothing.png"}}],
        "label_config": config,
    }
    assert "HTTP 404" in client.post("/label-studio/predict", json=missing).json()["error"]["message"]


def test_configs_without_regions_are_422(client) -> None:
    body = {"tasks": [{"id": 1, "data": {"image": "scenes/scene.png"}}]}
    no_regions = '<View><Image name="image" value="$image"/><Choices name="c" toName="image"/></View>'
    assert client.post("/label-studio/predict", json={**body, "label_config": no_regions}).status_code == 422
    assert client.post("/label-studio/predict", json=body).status_code == 422
