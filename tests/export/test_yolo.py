from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageDraw

from grounded_sam.export.class_ids import class_id_map
from grounded_sam.export.yolo import (
    result_to_yolo_box_lines,
    result_to_yolo_lines,
)
from grounded_sam.ops.polygons import mask_to_polygons, stitch_polygons
from grounded_sam.result import Result

H, W = 64, 96


def disk(cy: float, cx: float, r: float) -> np.ndarray:
    yy, xx = np.mgrid[:H, :W]
    return (yy - cy) ** 2 + (xx - cx) ** 2 < r**2


def rect(x1: int, y1: int, x2: int, y2: int) -> np.ndarray:
    mask = np.zeros((H, W), dtype=bool)
    mask[y1:y2, x1:x2] = True
    return mask


SHAPES = {
    "circle": disk(30, 40, 20),
    "square": rect(10, 10, 40, 40),
    "ring": disk(32, 48, 25) & ~disk(32, 48, 12),
    "square_frame": rect(5, 5, 60, 60) & ~rect(20, 20, 45, 45),
    "two_blobs": disk(20, 20, 10) | rect(60, 30, 90, 60),
    "ring_with_island": (disk(32, 48, 28) & ~disk(32, 48, 16)) | disk(32, 48, 6),
    "at_border": rect(0, 0, 30, H),
}


def rasterize(points: np.ndarray, scale: bool = True) -> np.ndarray:
    """Fill a normalised (K, 2) polygon back into an (H, W) mask, inclusive of its outline."""
    xy = points * np.array([W, H]) if scale else points
    canvas = Image.new("L", (W, H), 0)
    ImageDraw.Draw(canvas).polygon([tuple(p) for p in xy.tolist()], fill=1, outline=1)
    return np.asarray(canvas).astype(bool)


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / (a | b).sum())


def as_result(masks: list[np.ndarray], labels: list[str]) -> Result:
    n = len(masks)
    boxes = np.array([[4, 8, 40, 24]] * n, dtype=np.float32)
    return Result(np.stack(masks), boxes, labels, np.full(n, 0.5), np.full(n, 0.9), (H, W))


def parse(line: str) -> tuple[int, np.ndarray]:
    cls, *coords = line.split()
    return int(cls), np.array(coords, dtype=np.float64).reshape(-1, 2)


@pytest.mark.parametrize("name", list(SHAPES))
def test_yolo_polygon_rasterizes_back_to_the_mask(name: str) -> None:
    mask = SHAPES[name]
    (line,) = result_to_yolo_lines(as_result([mask], ["thing"]))
    cls, points = parse(line)
    assert cls == 0
    assert len(points) >= 3
    assert points.min() >= 0 and points.max() <= 1
    assert iou(rasterize(points), mask) >= 0.9


@pytest.mark.parametrize("name", ["circle", "ring", "square_frame"])
def test_exact_outline_without_simplification(name: str) -> None:
    mask = SHAPES[name]
    polygons = mask_to_polygons(mask, normalize=False, tolerance=0)
    assert len(polygons) == 1
    assert iou(rasterize(polygons[0], scale=False), mask) >= 0.98


def test_components_are_sorted_and_can_be_limited() -> None:
    mask = SHAPES["two_blobs"]
    polygons = mask_to_polygons(mask, normalize=False)
    assert len(polygons) == 2
    big = rasterize(polygons[0], scale=False)
    assert big[45, 75] and not big[20, 20]  # the rectangle (900 px) comes before the disk (~314 px)
    (largest,) = mask_to_polygons(mask, normalize=False, largest_only=True)
    np.testing.assert_array_equal(largest, polygons[0])


def test_without_holes_a_ring_fills_the_disk() -> None:
    ring = SHAPES["ring"]
    (outline,) = mask_to_polygons(ring, normalize=False, keep_holes=False)
    assert iou(rasterize(outline, scale=False), disk(32, 48, 25)) >= 0.95


def test_normalized_and_pixel_coordinates_agree() -> None:
    mask = SHAPES["circle"]
    (pixels,) = mask_to_polygons(mask, normalize=False)
    (normalized,) = mask_to_polygons(mask)
    np.testing.assert_allclose(normalized * [W, H], pixels, rtol=1e-6)
    assert pixels.dtype == np.float32 and pixels.shape[1] == 2


def test_tiny_and_empty_masks() -> None:
    dot = np.zeros((H, W), bool)
    dot[5, 7] = True
    (poly,) = mask_to_polygons(dot, normalize=False)
    assert poly.shape == (4, 2) and (poly == [7, 5]).all()
    assert rasterize(poly, scale=False)[5, 7]
    (edge_poly,) = mask_to_polygons(dot, normalize=False, pixel_edges=True)
    np.testing.assert_array_equal(edge_poly, [[7, 5], [8, 5], [8, 6], [7, 6]])
    assert mask_to_polygons(np.zeros((H, W), bool)) == []
    with pytest.raises(ValueError, match=r"\(H, W\)"):
        mask_to_polygons(np.zeros((1, H, W), bool))


def test_stitch_polygons() -> None:
    a = np.array([[0, 0], [10, 0], [10, 10], [0, 10]], dtype=np.float32)
    b = a + 20
    np.testing.assert_array_equal(stitch_polygons([a]), a)
    path = stitch_polygons([a, b])
    assert len(path) == len(a) + 1 + len(b) + 1 + 1
    np.testing.assert_array_equal(path[0], path[-1])  # closed
    filled = rasterize(path, scale=False)
    assert filled[5, 5] and filled[25, 25] and not filled[5, 25]
    with pytest.raises(ValueError, match="at least one"):
        stitch_polygons([])


def test_segmentation_lines_use_class_ids_and_skip_empty_masks() -> None:
    result = as_result([SHAPES["circle"], np.zeros((H, W), bool), SHAPES["square"]], ["b", "a", "a"])
    lines = result_to_yolo_lines(result)
    assert [parse(line)[0] for line in lines] == [1, 0]  # sorted labels: a -> 0, b -> 1; empty skipped
    lines = result_to_yolo_lines(result, {"a": 7, "b": 3})
    assert [parse(line)[0] for line in lines] == [3, 7]
    assert all(len(tok.split(".")[1]) == 6 for tok in lines[0].split()[1:])
    with pytest.raises(ValueError, match=r"\['b'\] have no class id"):
        result_to_yolo_lines(result, {"a": 0})
    assert result_to_yolo_lines(Result.empty((H, W))) == []


def test_detection_lines() -> None:
    boxes = np.array([[0, 0, 48, 32], [-10, 16, 96, 80]], dtype=np.float32)  # second is clipped
    result = Result(np.zeros((2, H, W), bool), boxes, ["x", "y"], [1, 1], [1, 1], (H, W))
    lines = result_to_yolo_box_lines(result, {"x": 0, "y": 5})
    assert lines[0] == "0 0.250000 0.250000 0.500000 0.500000"
    assert lines[1] == "5 0.500000 0.625000 1.000000 0.750000"
    assert result_to_yolo_box_lines(Result.empty((H, W))) == []


def test_class_id_map() -> None:
    assert class_id_map(["dog", "cat", "dog"]) == {"cat": 0, "dog": 1}
    assert class_id_map(["dog", "cat"], start=1) == {"cat": 1, "dog": 2}


def test_detection_lines_use_the_mask_box() -> None:
    masks = np.zeros((1, H, W), bool)
    masks[0, 8:24, 12:36] = True  # columns 12..35, rows 8..23
    result = Result(masks, np.array([[20, 10, 30, 20]], np.float32), ["x"], [1], [1], (H, W))
    (line,) = result_to_yolo_box_lines(result)
    cx, cy, w, h = (float(v) for v in line.split()[1:])
    assert (cx * W, cy * H, w * W, h * H) == pytest.approx((24, 16, 24, 16))
