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
