"""The groundingdino-py backend: the missing-extra error, and our phrase mapping around a stand-in model."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch

from grounded_sam.text.groundingdino_py_backend import GroundingDinoPy, import_groundingdino, resize_shape
from tests.text.gdino_builders import tiny_processor

IMAGE = np.zeros((30, 40, 3), dtype=np.uint8)


class StandIn(torch.nn.Module):
    """Called like the original model; query 0 fires on "traffic light", query 1 on "light"."""

    def __init__(self, tokenizer) -> None:
        super().__init__()
        self.tokenizer = tokenizer
        self.weight = torch.nn.Parameter(torch.zeros(1))
        self.calls: list[tuple[tuple[int, ...], str]] = []

    def forward(self, images: torch.Tensor, captions: list[str]) -> dict[str, torch.Tensor]:
        self.calls.append((tuple(images.shape), captions[0]))
        ids = self.tokenizer(captions[0])["input_ids"]
        logits = torch.full((1, 3, 256), float("-inf"))
        logits[0, :, : len(ids)] = -5.0
        if 202 in ids:  # "traffic" and the "light" after it
            start = ids.index(202)
            logits[0, 0, start : start + 2] = 3.0
        if 203 in ids:
            logits[0, 1, ids.index(203)] = 2.0  # the first "light" of the caption
        boxes = torch.tensor([[[0.5, 0.5, 0.5, 0.5], [0.25, 0.25, 0.1, 0.1], [0.5, 0.5, 1.0, 1.0]]])
        return {"pred_logits": logits, "pred_boxes": boxes}


@pytest.fixture
def stand_in(tmp_path):
    return StandIn(tiny_processor(tmp_path).tokenizer)


def test_missing_package_names_the_extra(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "groundingdino", None)
    with pytest.raises(ImportError, match=r'pip install "grounded_sam\[gdino\]"'):
        import_groundingdino()
    with pytest.raises(ImportError, match="grounded_sam"):
        GroundingDinoPy.from_files("GroundingDINO_SwinT_OGC.py", "groundingdino_swint_ogc.pth")


def test_phrases_map_back_through_the_original_caption_route(stand_in) -> None:
    detector = GroundingDinoPy(stand_in, "cpu", min_size=20, max_size=40)
    found = detector.detect(IMAGE, ["light", "traffic light"])
    assert stand_in.calls == [((1, 3, 20, 27), "light. traffic light.")]
    assert found.labels == ["traffic light", "light"]
    np.testing.assert_allclose(found.boxes, [[10, 7.5, 30, 22.5], [8, 6, 12, 9]])


def test_thresholds_and_chunking_are_shared(stand_in) -> None:
    detector = GroundingDinoPy(stand_in, "cpu", min_size=20, max_text_tokens=8, box_threshold=0.9)
    found = detector.detect(IMAGE, "light. traffic light. cat")
    assert [caption for _, caption in stand_in.calls] == ["light. traffic light.", "cat."]
    assert found.labels == ["traffic light"]
    with pytest.raises(ValueError, match="text_threshold"):
        GroundingDinoPy(stand_in, text_threshold=2)


@pytest.mark.parametrize(
    ("shape", "expected"), [((480, 640), (800, 1067)), ((100, 1000), (133, 1333)), ((800, 800), (800, 800))]
)
def test_resize_follows_the_original_800_1333_rule(shape, expected) -> None:
    assert resize_shape(*shape, 800, 1333) == expected
