"""Label Studio brush RLE decoded in this process by label_studio_sdk's own converter (installed without
its pinned dependencies by .ci/run: the converter needs only numpy and Pillow)."""

from __future__ import annotations

import numpy as np
import pytest
from label_studio_sdk.converter import brush

from grounded_sam.export.label_studio import box_to_percent, mask_to_brush_rle


def _decoded(rle: list[int], shape: tuple[int, int]) -> np.ndarray:
    rgba = brush.decode_rle(rle).reshape(*shape, 4)
    assert (rgba == rgba[..., :1]).all()  # every channel carries the mask
    return rgba[..., 3] == 255


def _masks() -> list[np.ndarray]:
    rng = np.random.default_rng(7)
    block = np.zeros((300, 400), dtype=bool)
    block[100:, 50:] = True
    ring = np.zeros((64, 80), dtype=bool)
    ring[8:56, 8:72] = True
    ring[20:44, 20:60] = False
    return [
        rng.random((37, 53)) > 0.5,  # runs of one pixel
        np.zeros((20, 30), dtype=bool),
        np.ones((200, 300), dtype=bool),  # one run of 240,000 values: split into runs of 65,536
        block,
        ring,
        np.ones((1, 1), dtype=bool),
    ]


@pytest.mark.parametrize("index", range(6))
def test_brush_rle_decodes_with_label_studio_sdk(index: int) -> None:
    mask = _masks()[index]
    rle = mask_to_brush_rle(mask)
    assert all(isinstance(v, int) and 0 <= v < 256 for v in rle)
    assert np.array_equal(_decoded(rle, mask.shape), mask)


def test_rectangles_in_percent() -> None:
    assert box_to_percent(np.array([40, 30, 120, 90]), width=400, height=300) == {
        "x": 10.0,
        "y": 10.0,
        "width": 20.0,
        "height": 20.0,
        "rotation": 0.0,
    }
