"""Reading a Label Studio labelling config and an annotator's click context (no server needed)."""

from __future__ import annotations

import numpy as np
import pytest

from grounded_sam.serve.errors import ApiError
from grounded_sam.serve.label_studio import click_context, parse_label_config

CONFIG = """<View>
  <Image name="photo" value="$img"/>
  <BrushLabels name="paint" toName="photo">
    <Label value="Car" predicted_values="car, pickup truck"/>
    <Label value="Person" hint="pedestrian"/>
    <Label value="Tree"/>
  </BrushLabels>
  <RectangleLabels name="boxes" toName="photo"><Label value="Sign"/></RectangleLabels>
  <Choices name="quality" toName="photo"><Choice value="good"/></Choices>
</View>"""


def test_labels_become_phrases_and_phrases_map_back_to_labels() -> None:
    brush, boxes = parse_label_config(CONFIG)
    assert (brush.name, brush.kind, brush.to_name, brush.data_key) == ("paint", "BrushLabels", "photo", "img")
    assert dict(brush.phrases) == {
        "car": "Car",
        "pickup truck": "Car",
        "pedestrian": "Person",
        "Tree": "Tree",
    }
    assert (boxes.kind, boxes.result_type, dict(boxes.phrases)) == (
        "RectangleLabels",
        "rectanglelabels",
        {"Sign": "Sign"},
    )


@pytest.mark.parametrize(
    "config",
    [
        "<View><Image",
        "<View><Image name='i' value='$i'/></View>",
        "<View><BrushLabels name='b' toName='x'/></View>",
    ],
)
def test_configs_that_ask_for_nothing_are_422(config) -> None:
    with pytest.raises(ApiError) as caught:
        parse_label_config(config)
    assert caught.value.status == 422


def test_clicks_and_a_box_in_percent_become_pixels() -> None:
    size = {"original_width": 400, "original_height": 200}
    context = {
        "result": [
            {
                **size,
                "type": "keypointlabels",
                "is_positive": True,
                "value": {"x": 50, "y": 25, "keypointlabels": ["Car"]},
            },
            {
                **size,
                "type": "keypointlabels",
                "is_positive": False,
                "value": {"x": 10, "y": 10, "keypointlabels": ["Car"]},
            },
            {
                **size,
                "type": "rectanglelabels",
                "value": {"x": 25, "y": 50, "width": 50, "height": 25, "rectanglelabels": ["Car"]},
            },
            {**size, "type": "choices", "value": {"choices": ["good"]}},
        ]
    }
    click = click_context(context)
    assert click is not None and click.label == "Car"
    np.testing.assert_allclose(click.points, [[200, 50], [40, 20]])
    assert click.point_labels.tolist() == [1, 0]
    np.testing.assert_allclose(click.box, [100, 100, 300, 150])
    assert click_context({"result": []}) is None and click_context(None) is None
    with pytest.raises(ApiError):
        click_context({"result": [{"type": "keypointlabels", "value": {"x": 1}}]})


def test_region_results_keep_a_compact_result_compact_and_match_the_dense_one(monkeypatch) -> None:
    from grounded_sam.ops.mask_crops import MaskCrops
    from grounded_sam.result import Result
    from grounded_sam.serve.label_studio import region_results

    dense = np.zeros((2, 40, 60), dtype=bool)
    dense[0, 5:15, 10:30] = True
    dense[1, 20:35, 40:55] = True
    fields = (np.array([[10, 5, 30, 15], [40, 20, 55, 35]], np.float32), ["car", "pedestrian"])
    scores = (np.array([0.9, 0.8], np.float32), np.array([0.95, 0.85], np.float32))
    compact = Result(MaskCrops.from_dense(dense), *fields, *scores, image_size=(40, 60))
    plain = Result(dense, *fields, *scores, image_size=(40, 60))
    controls = parse_label_config(CONFIG)

    expected = region_results(plain, controls, "v1")
    # Building the dense (N, H, W) stack of a tiled photo's masks is what compact results avoid.
    monkeypatch.setattr(MaskCrops, "dense", lambda self: pytest.fail("the dense mask stack was built"))
    from_compact = region_results(compact, controls, "v1")
    assert from_compact == expected
    labels = [region["value"]["brushlabels"] for region in from_compact["result"]]
    assert labels == [["Car"], ["Person"]]
