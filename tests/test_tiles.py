"""Tiled prediction: objects cut by tile borders come back as one mask; small objects are found in tiles.

The stand-in models see only what they are given (a crop): the detector boxes the connected components
of a colour, and misses those smaller than 3 % of its input's long side (as a model that shrinks its
input would); the predictor returns the colour's pixels inside the box.
"""

from __future__ import annotations

import itertools
import json
import tracemalloc

import cv2
import numpy as np
import pytest

from grounded_sam.pipeline import GroundedSAM
from grounded_sam.text.base import Detections
from grounded_sam.tiles import Tiling, as_tiling, merge_tile_boxes, tile_windows

COLOURS = {"red": (255, 0, 0), "blue": (0, 0, 255)}


def colour_mask(image: np.ndarray, phrase: str) -> np.ndarray:
    return (image == np.array(COLOURS[phrase], np.uint8)).all(axis=2)


class ComponentDetector:
    def __init__(self, min_fraction: float = 0.03) -> None:
        self.min_fraction = min_fraction
        self.inputs: list[tuple[int, int]] = []

    def detect(self, image, phrases, *, box_threshold=None, text_threshold=None) -> Detections:
        self.inputs.append(image.shape[:2])
        boxes, ids = [], []
        for k, phrase in enumerate(phrases):
            n, _, stats, _ = cv2.connectedComponentsWithStats(colour_mask(image, phrase).astype(np.uint8))
            for x, y, w, h, _ in stats[1:n]:
                if max(w, h) >= self.min_fraction * max(image.shape[:2]):
                    boxes.append([x, y, x + w, y + h])
                    ids.append(k)
        scores = [0.9 - 0.01 * i for i in range(len(ids))]
        return Detections(np.array(boxes, np.float32).reshape(-1, 4), scores, ids, tuple(phrases))


class ColourPredictor:
    def __init__(self) -> None:
        self.image = None
        self.sizes: list[tuple[int, int]] = []

    def set_image(self, image) -> None:
        self.image = np.asarray(image)
        self.sizes.append(self.image.shape[:2])

    def predict_boxes(self, boxes, multimask_output=False):
        masks = []
        for x0, y0, x1, y1 in np.round(boxes).astype(int):
            inside = np.zeros(self.image.shape[:2], bool)
            inside[max(y0, 0) : y1, max(x0, 0) : x1] = True
            masks.append(inside & (colour_mask(self.image, "red") | colour_mask(self.image, "blue")))
        masks = np.stack(masks)[:, None]
        return masks, np.full((len(masks), 1), 0.9, np.float32), np.zeros((len(masks), 1, 4, 4), np.float32)


def canvas(h: int, w: int) -> np.ndarray:
    return np.full((h, w, 3), 200, np.uint8)


def test_tile_windows_cover_the_image() -> None:
    assert tile_windows(100, 120, 128, 0.2) == []  # fits in one tile: the full pass is enough
    windows = tile_windows(300, 500, 128, 0.25)
    covered = np.zeros((300, 500), bool)
    for x0, y0, x1, y1 in windows:
        assert x1 - x0 == 128 and y1 - y0 == 128
        covered[y0:y1, x0:x1] = True
    assert covered.all()
    xs = sorted({w[0] for w in windows})
    assert xs[0] == 0 and xs[-1] == 500 - 128 and all(b - a <= 96 for a, b in itertools.pairwise(xs))
    assert as_tiling((256, 0.1)) == Tiling(256, 0.1) and as_tiling(512).size == 512
    with pytest.raises(ValueError, match="overlap"):
        Tiling(256, 0.95)


def test_an_object_across_a_tile_border_gives_one_mask() -> None:
    image = canvas(300, 300)
    image[40:70, 80:140] = COLOURS["red"]  # crosses the border x = 96 of the first tile
    image[200:290, 150:290] = COLOURS["blue"]  # larger than the overlap: cut in every tile
    detector, predictor = ComponentDetector(min_fraction=0.0), ColourPredictor()
    pipeline = GroundedSAM(detector, predictor)
    for full_pass in (True, False):
        result = pipeline.predict(image, "red. blue", tiles=Tiling(128, 0.25, full_pass=full_pass))
        assert sorted(result.labels) == ["blue", "red"]
        for label in ("red", "blue"):
            (mask,) = result.filter(labels=label).masks
            np.testing.assert_array_equal(mask, colour_mask(image, label))
        np.testing.assert_array_equal(result.mask_boxes(), result.boxes)  # the merged box is the object's
    assert max(max(s) for s in predictor.sizes) <= 300 and predictor.sizes.count((300, 300)) >= 1


def test_small_objects_are_found_in_tiles_only() -> None:
    rng = np.random.default_rng(0)
    image = canvas(1200, 1800)
    truth = []
    for _ in range(12):
        y, x = rng.integers(0, 1200 - 20), rng.integers(0, 1800 - 20)
        if colour_mask(image[y - 2 : y + 22, x - 2 : x + 22], "red").any():
            continue
        image[y : y + 20, x : x + 20] = COLOURS["red"]  # 20 px: 1 % of the long side
        truth.append((x, y))
    pipeline = GroundedSAM(ComponentDetector(), ColourPredictor())
    assert len(pipeline.predict(image, "red")) == 0
    tiled = pipeline.predict(image, "red", tiles=(512, 0.2))
    assert len(tiled) == len(truth)
    assert sorted(tuple(int(v) for v in b[:2]) for b in tiled.boxes) == sorted(truth)
    assert (tiled.areas == 400).all()


def test_merge_keeps_distinct_objects_and_the_best_whole_view() -> None:
    boxes = np.array([[0, 0, 10, 10], [1, 1, 10, 10], [50, 50, 60, 60], [0, 0, 10, 10]], np.float32)
    merged = merge_tile_boxes(
        boxes,
        np.array([0.5, 0.9, 0.8, 0.7]),
        np.array([0, 0, 0, 1]),
        np.array([False, True, False, False]),
        ["a", "b"],
    )
    assert merged.labels == ["a", "a", "b"]  # the piece joined the whole view; b stays apart from a
    np.testing.assert_array_equal(merged.boxes[0], [0, 0, 10, 10])  # whole box, best score of the group
    assert merged.scores.tolist() == pytest.approx([0.9, 0.8, 0.7])


def test_label_and_predict_commands_take_tiles(tmp_path, monkeypatch) -> None:
    from typer.testing import CliRunner

    from grounded_sam import api
    from grounded_sam.cli import app
    from grounded_sam.labeling import label_dataset

    image = canvas(300, 300)
    image[40:70, 80:140] = COLOURS["red"]
    folder = tmp_path / "in"
    folder.mkdir()
    cv2.imwrite(str(folder / "a.png"), image[..., ::-1])
    detector = ComponentDetector(min_fraction=0.2)  # misses the object in the full image, not in tiles
    pipeline = GroundedSAM(detector, ColourPredictor())
    monkeypatch.setattr(api, "default_pipeline", lambda *names: pipeline)
    runner = CliRunner()
    args = [
        "label",
        str(folder),
        "-c",
        "red",
        "-o",
        str(tmp_path / "ds"),
        "--tile",
        "128",
        "--tile-overlap",
        "0.25",
    ]
    done = runner.invoke(app, args)
    assert done.exit_code == 0, done.output
    summary = label_dataset(
        folder,
        "red",
        tmp_path / "ds",
        pipeline=pipeline,
        tiles=(128, 0.25),
        model_id="sam=demo, detector=demo",
    )
    assert summary.instances_per_class == {"red": 1} and summary.resumed == 1  # same settings: resumed
    assert json.loads((tmp_path / "ds" / ".labeling" / "settings.json").read_text())["settings"]["tiles"] == [
        128,
        0.25,
    ]
    assert (128, 128) in detector.inputs
    out = tmp_path / "pred"
    done = runner.invoke(
        app, ["predict", str(folder / "a.png"), "-p", "red", "-o", str(out), "-f", "json", "--tile", "128"]
    )
    assert done.exit_code == 0, done.output
    bad = runner.invoke(app, ["predict", str(folder / "a.png"), "-p", "red", "--tile", "8"])
    assert bad.exit_code == 2 and "at least 64" in " ".join(bad.output.split())


def tiled_peak_bytes(scale: int, full_pass: bool) -> tuple[int, int]:
    """(instances, peak bytes allocated by a tiled prediction) on a (600 scale) x (900 scale) image with
    40 small squares; the image itself is allocated before tracing starts."""
    image = canvas(600 * scale, 900 * scale)
    for k in range(40):
        y, x = 60 + 120 * (k // 8) * scale, 50 + 100 * (k % 8) * scale
        image[y : y + 16, x : x + 16] = COLOURS["red"]
    pipeline = GroundedSAM(ComponentDetector(min_fraction=0.0), ColourPredictor())
    tracemalloc.start()
    try:
        result = pipeline.predict(image, "red", tiles=Tiling(256, 0.2, full_pass=full_pass))
        areas = result.areas
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert result.compact and (areas == 256).all()
    return len(result), peak


def test_tiled_memory_is_bounded_by_the_tile_not_the_image() -> None:
    found_1, tiles_only_1 = tiled_peak_bytes(1, full_pass=False)
    found_4, tiles_only_4 = tiled_peak_bytes(2, full_pass=False)  # 4x the pixels
    assert found_1 == found_4 == 40
    # Tiles only: what is held is one tile's data and the masks' crops, whatever the image size (dense
    # (N, H, W) masks were 40 x 2.2 MB at 4x). Detection on the whole image (the full pass) costs a few
    # image-sized arrays, never one per instance.
    assert tiles_only_4 < 1.3 * tiles_only_1 and tiles_only_4 < 4 * 256 * 256 * 3, (
        tiles_only_1,
        tiles_only_4,
    )
    found_full, full = tiled_peak_bytes(2, full_pass=True)
    assert found_full == 40 and full < 2.5 * (1200 * 1800 * 3), full


def test_boxes_are_decoded_a_few_at_a_time_with_the_same_masks(monkeypatch) -> None:
    import grounded_sam.tiles as tiles

    image = canvas(300, 300)
    image[200:290, 150:290] = COLOURS["blue"]  # larger than a tile: decoded on the whole image
    for k in range(3):
        image[20 + 40 * k : 40 + 40 * k, 20:40] = COLOURS["red"]
    pipeline = GroundedSAM(ComponentDetector(min_fraction=0.0), ColourPredictor())
    whole = pipeline.predict(image, "red. blue", tiles=Tiling(128, 0.25))
    monkeypatch.setattr(tiles, "DECODE_PIXELS", 1)  # one box per SAM call
    calls: list[int] = []
    original = ColourPredictor.predict_boxes
    monkeypatch.setattr(
        ColourPredictor, "predict_boxes", lambda self, b, **k: calls.append(len(b)) or original(self, b, **k)
    )
    one_by_one = pipeline.predict(image, "red. blue", tiles=Tiling(128, 0.25))
    assert set(calls) == {1} and len(calls) == len(whole) == 4
    assert one_by_one.labels == whole.labels and (one_by_one.areas == whole.areas).all()
    np.testing.assert_array_equal(one_by_one.masks, whole.masks)
