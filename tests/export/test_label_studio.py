"""Label Studio export: brush RLE checked against Label Studio's own decoder (label_studio_sdk, in its own
venv: it pins numpy and opencv), and against a bit-level reading of the format here."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import numpy as np
import pytest
from PIL import Image, ImageDraw

from grounded_sam.export.label_studio import (
    label_config,
    label_studio_task,
    mask_to_brush_rle,
    result_to_label_studio,
)
from grounded_sam.result import Result
from tests.tool_venvs import run_tool, tool_python

H, W = 37, 53


def masks() -> np.ndarray:
    rng = np.random.default_rng(4)
    yy, xx = np.mgrid[:H, :W]
    disk = (yy - 18) ** 2 + (xx - 15) ** 2 < 11**2
    speckle = rng.random((H, W)) > 0.7
    full = np.ones((H, W), bool)
    return np.stack([disk, speckle, full, np.zeros((H, W), bool)])


def decode_rle_pack(data: list[int]) -> np.ndarray:
    """A reading of thi.ng's rle-pack (the format Label Studio uses), written from its description."""
    bits = "".join(f"{byte:08b}" for byte in data)
    pos = 0

    def read(n: int) -> int:
        nonlocal pos
        value = int(bits[pos : pos + n], 2)
        pos += n
        return value

    num, word = read(32), read(5) + 1
    sizes = [read(4) + 1 for _ in range(4)]
    out = np.zeros(num, np.uint8)
    i = 0
    while i < num:
        repeat = read(1)
        j = i + 1 + read(sizes[read(2)])
        if repeat:
            out[i:j] = read(word)
        else:
            out[i:j] = [read(word) for _ in range(j - i)]
        i = j
    return out


def test_brush_rle_decodes_to_the_rgba_mask() -> None:
    for mask in masks():
        flat = decode_rle_pack(mask_to_brush_rle(mask))
        assert flat.shape == (H * W * 4,)
        rgba = flat.reshape(H, W, 4)
        assert (rgba == rgba[..., :1]).all()  # every channel carries the mask
        np.testing.assert_array_equal(rgba[..., 3] == 255, mask)


def test_long_runs_are_split_into_chunks() -> None:
    mask = np.ones((300, 300), bool)  # 360,000 equal words: more than one 16-bit run
    np.testing.assert_array_equal(decode_rle_pack(mask_to_brush_rle(mask)), 255)


def sample() -> Result:
    m = masks()[:2]
    return Result(
        m,
        np.array([[4, 7, 26, 29], [0, 0, W, H]], np.float32),
        ["car", "dust"],
        [0.8, 0.4],
        [0.9, 0.5],
        (H, W),
    )


def test_regions_tasks_and_config() -> None:
    result = sample()
    brush = result_to_label_studio(result)
    assert [r["value"]["brushlabels"] for r in brush] == [["car"], ["dust"]]
    assert all(r["original_width"] == W and r["original_height"] == H for r in brush)
    assert [r["score"] for r in brush] == [0.8, 0.4]
    polygons = result_to_label_studio(result[[0]], masks="polygon")
    (disk,) = polygons
    points = np.array(disk["value"]["points"]) / 100 * [W, H]
    drawn = Image.new("1", (W, H))
    ImageDraw.Draw(drawn).polygon([tuple(p) for p in points], fill=1, outline=1)
    assert (np.asarray(drawn) & result.masks[0]).sum() / (np.asarray(drawn) | result.masks[0]).sum() > 0.9
    task = label_studio_task("/data/local-files/?d=images/a.png", brush, [0.8, 0.4], "v1")
    assert task["data"]["image"].endswith("a.png") and task["predictions"][0]["score"] == pytest.approx(0.6)
    json.dumps(task)
    config = label_config(["car", 'say "hi"'])
    view = ET.fromstring(config)
    assert [e.get("value") for e in view.iter("Label")] == ["car", 'say "hi"']
    assert view.find("BrushLabels").get("toName") == view.find("Image").get("name") == "image"
    assert ET.fromstring(label_config(["car"], "polygon")).find("PolygonLabels") is not None
    with pytest.raises(ValueError, match="brush"):
        result_to_label_studio(result, masks="lines")  # type: ignore[arg-type]


LS_DECODE = """
import json, sys
import numpy as np
from label_studio_sdk.converter import brush
tasks = json.load(open(sys.argv[1]))
out = []
for region in tasks[0]["predictions"][0]["result"]:
    h, w = region["original_height"], region["original_width"]
    flat = brush.decode_rle(region["value"]["rle"])
    mask = np.reshape(flat, [h, w, 4])[:, :, 3] > 0
    out.append({"label": region["value"]["brushlabels"][0], "pixels": np.flatnonzero(mask.ravel()).tolist()})
print(json.dumps(out))
"""


@pytest.mark.slow
def test_label_studio_sdk_decodes_the_same_masks(tmp_path) -> None:
    python = tool_python("label-studio", ["label-studio-sdk==2.1.2"])
    result = Result(masks()[:3], np.zeros((3, 4), np.float32), ["a", "b", "c"], [1, 1, 1], [1, 1, 1], (H, W))
    path = tmp_path / "tasks.json"
    path.write_text(json.dumps([label_studio_task("x.png", result_to_label_studio(result), [1], "v")]))
    decoded = run_tool(python, LS_DECODE, str(path))
    assert [d["label"] for d in decoded] == ["a", "b", "c"]
    for item, mask in zip(decoded, result.masks, strict=True):
        assert item["pixels"] == np.flatnonzero(mask.ravel()).tolist()
