from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from grounded_sam.export import EXPORT_FORMATS, load_result
from grounded_sam.result import Instance, Result

H, W = 24, 32


def box_mask(x1: int, y1: int, x2: int, y2: int) -> np.ndarray:
    mask = np.zeros((H, W), dtype=bool)
    mask[y1:y2, x1:x2] = True
    return mask


def sample() -> Result:
    """Three instances: a big cat, a small dog inside it, a mid-sized cat elsewhere."""
    return Result(
        masks=np.stack([box_mask(0, 0, 16, 16), box_mask(4, 4, 8, 8), box_mask(20, 10, 30, 20)]),
        boxes=np.array([[0, 0, 16, 16], [4, 4, 8, 8], [20, 10, 30, 20]], dtype=np.float64),
        labels=("cat", "dog", "cat"),
        scores=[0.9, 0.3, 0.6],
        mask_scores=np.array([0.8, 0.7, 0.95]),
        image_size=(H, W),
    )


def test_construction_coerces_dtypes() -> None:
    r = sample()
    assert r.masks.dtype == bool and r.masks.shape == (3, H, W)
    assert r.boxes.dtype == np.float32 and r.boxes.shape == (3, 4)
    assert r.scores.dtype == np.float32 and r.mask_scores.dtype == np.float32
    assert r.labels == ["cat", "dog", "cat"] and isinstance(r.labels, list)
    assert r.image_size == (H, W)
    from_torch = Result(
        torch.from_numpy(r.masks.astype(np.uint8)),
        torch.from_numpy(r.boxes),
        r.labels,
        r.scores,
        r.mask_scores,
        [H, W],
    )
    np.testing.assert_array_equal(from_torch.masks, r.masks)
    assert from_torch.masks.dtype == bool
    assert from_torch.image_size == (H, W)


@pytest.mark.parametrize(
    ("field", "value", "error", "match"),
    [
        (
            "masks",
            np.zeros((2, H, W), bool),
            ValueError,
            r"boxes must have shape \(N, 4\) = \(2, 4\).*got \(3, 4\)",
        ),
        ("masks", np.zeros((3, H, W + 1), bool), ValueError, rf"\(N, {H}, {W}\); got \(3, {H}, {W + 1}\)"),
        ("masks", np.zeros((H, W), bool), ValueError, "masks must have shape"),
        ("masks", np.full((3, H, W), 2, np.uint8), TypeError, "threshold"),
        ("masks", np.full((3, H, W), 0.5, np.float32), TypeError, "threshold"),
        ("boxes", np.zeros((3, 5)), ValueError, r"boxes must have shape \(N, 4\) = \(3, 4\).*got \(3, 5\)"),
        ("boxes", np.full((3, 4), np.nan), ValueError, "NaN"),
        ("boxes", np.full((3, 4), "a"), TypeError, "real numbers"),
        ("scores", [0.1, 0.2], ValueError, r"scores must have shape \(N,\) = \(3,\).*got \(2,\)"),
        ("mask_scores", np.zeros((3, 1)), ValueError, r"mask_scores must have shape \(N,\)"),
        ("labels", ["a", "b"], ValueError, "labels must have length N = 3.*got 2"),
        ("labels", ["a", "b", 3], TypeError, "labels must be strings"),
        ("labels", "abc", TypeError, "wrap it in a list"),
        ("image_size", (H, 0), ValueError, "two positive ints"),
        ("image_size", (H,), ValueError, "two positive ints"),
    ],
)
def test_validation_errors(field: str, value: object, error: type[Exception], match: str) -> None:
    r = sample()
    fields = {k: getattr(r, k) for k in ("masks", "boxes", "labels", "scores", "mask_scores", "image_size")}
    fields[field] = value
    with pytest.raises(error, match=match):
        Result(**fields)


def test_empty_result() -> None:
    r = Result.empty((H, W))
    assert len(r) == 0
    assert r.masks.shape == (0, H, W) and r.masks.dtype == bool
    assert r.boxes.shape == (0, 4) and r.boxes.dtype == np.float32
    assert r.scores.shape == (0,) and r.mask_scores.shape == (0,)
    assert r.labels == [] and list(r) == []
    assert r.areas.shape == (0,)
    assert len(r.filter(min_score=0.5, labels=["cat"], min_area=1)) == 0
    assert (r.instance_map() == -1).all()
    assert len(Result.concat([r, r])) == 0
    # [] and zeros(0) are accepted for the float fields of an empty result
    assert len(Result(np.zeros((0, H, W), bool), [], [], [], np.zeros(0), (H, W))) == 0


@pytest.mark.parametrize(
    ("key", "labels"),
    [
        (1, ["dog"]),
        (-1, ["cat"]),
        (slice(1, None), ["dog", "cat"]),
        (np.array([True, False, True]), ["cat", "cat"]),
        ([2, 0], ["cat", "cat"]),
        (np.array([1, 1]), ["dog", "dog"]),
        ([], []),
    ],
)
def test_indexing(key: object, labels: list[str]) -> None:
    r = sample()
    sub = r[key]
    assert isinstance(sub, Result)
    assert sub.labels == labels
    idx = np.atleast_1d(np.arange(3)[np.asarray(key, dtype=np.intp) if isinstance(key, list) else key])
    np.testing.assert_array_equal(sub.masks, r.masks[idx])
    np.testing.assert_array_equal(sub.boxes, r.boxes[idx])
    np.testing.assert_array_equal(sub.scores, r.scores[idx])
    np.testing.assert_array_equal(sub.mask_scores, r.mask_scores[idx])


def test_bad_indices() -> None:
    r = sample()
    with pytest.raises(IndexError, match="3 instances"):
        r[3]
    with pytest.raises(IndexError, match=r"shape \(3,\)"):
        r[np.array([True, False])]


def test_iteration_and_areas() -> None:
    r = sample()
    instances = list(r)
    assert all(isinstance(inst, Instance) for inst in instances)
    assert [inst.label for inst in instances] == r.labels
    assert [inst.area for inst in instances] == [256, 16, 100]
    assert instances[1].score == pytest.approx(0.3)
    assert instances[2].mask_score == pytest.approx(0.95)
    np.testing.assert_array_equal(r.areas, [256, 16, 100])
    assert r.areas.dtype == np.int64


def test_filter() -> None:
    r = sample()
    assert r.filter(min_score=0.5).labels == ["cat", "cat"]
    assert r.filter(labels="dog").labels == ["dog"]
    assert r.filter(labels=["dog", "bird"]).scores.tolist() == pytest.approx([0.3])
    assert r.filter(min_area=50).areas.tolist() == [256, 100]
    assert r.filter(min_mask_score=0.9).areas.tolist() == [100]
    assert len(r.filter(min_score=0.5, labels=["dog"])) == 0
    assert len(r.filter()) == 3


def test_concat() -> None:
    r = sample()
    both = Result.concat([r[:1], r[1:]])
    assert both.labels == r.labels
    np.testing.assert_array_equal(both.masks, r.masks)
    with pytest.raises(ValueError, match="at least one"):
        Result.concat([])
    with pytest.raises(ValueError, match="different image sizes"):
        Result.concat([r, Result.empty((H, W + 1))])


def test_instance_map_puts_smaller_masks_on_top() -> None:
    owner = sample().instance_map()
    assert owner.shape == (H, W) and owner.dtype == np.int32
    assert owner[5, 5] == 1  # dog inside the big cat
    assert owner[0, 0] == 0
    assert owner[15, 25] == 2
    assert owner[H - 1, W - 1] == -1
    assert (owner >= 0).sum() == 256 + 100


def test_repr_is_short() -> None:
    assert repr(sample()) == "Result(n=3, image_size=(24, 32), labels=['cat', 'dog', 'cat'])"


@pytest.mark.parametrize("result", [sample(), Result.empty((H, W))], ids=["three", "empty"])
def test_every_method_works(result: Result, tmp_path: Path) -> None:
    image = np.full((H, W, 3), 100, np.uint8)
    overlay = result.overlay(image)
    assert isinstance(overlay, Image.Image) and overlay.size == (W, H)
    coco = result.to_coco(image_id=7)
    assert len(coco) == len(result) and all(a["image_id"] == 7 for a in coco)
    assert len(result.to_yolo()) == len(result)
    assert len(result.to_yolo(task="detect")) == len(result)
    with pytest.raises(ValueError, match="segment"):
        result.to_yolo(task="pose")  # type: ignore[arg-type]
    detections = result.to_supervision() if _has_supervision() else None
    if detections is not None:
        assert len(detections) == len(result)
    for fmt in EXPORT_FORMATS:
        paths = result.save(tmp_path / fmt, fmt, stem="img", image=image)
        assert paths and all(p.is_file() for p in paths)


def test_save_formats_and_json_round_trip(tmp_path: Path) -> None:
    r = sample()
    (json_path,) = r.save(tmp_path, "json", stem="x")
    assert json_path == tmp_path / "x.json"
    back = load_result(json_path)
    for field in ("masks", "boxes", "scores", "mask_scores"):
        np.testing.assert_array_equal(getattr(back, field), getattr(r, field))
    assert back.labels == r.labels and back.image_size == r.image_size
    assert len(load_result(Result.empty((H, W)).save(tmp_path, "json", stem="e")[0])) == 0

    coco = json.loads(r.save(tmp_path, "coco", stem="x", image="photos/x.jpg")[0].read_text())
    assert coco["images"][0]["file_name"] == "x.jpg"
    txt, classes = r.save(tmp_path, "yolo", stem="x")
    assert classes.read_text() == "cat\ndog\n"
    assert [line.split()[0] for line in txt.read_text().splitlines()] == ["0", "1", "0"]
    assert r.save(tmp_path, "yolo", stem="y", class_ids={"cat": 3, "dog": 4}) == [tmp_path / "y.txt"]
    with pytest.raises(ValueError, match="pass image="):
        r.save(tmp_path, "overlay")
    with pytest.raises(ValueError, match="unknown export format 'tiff'"):
        r.save(tmp_path, "tiff")  # type: ignore[arg-type]


def test_load_result_rejects_other_json(tmp_path: Path) -> None:
    (tmp_path / "a.json").write_text('{"foo": 1}')
    with pytest.raises(ValueError, match="not a grounded_sam result"):
        load_result(tmp_path / "a.json")
    (tmp_path / "b.json").write_text("{")
    with pytest.raises(ValueError, match="not valid JSON"):
        load_result(tmp_path / "b.json")


def _has_supervision() -> bool:
    try:
        import supervision  # noqa: F401
    except ImportError:
        return False
    return True


def test_a_result_that_knows_its_image_saves_an_overlay_and_names_it_in_coco(tmp_path: Path) -> None:
    photo = tmp_path / "photos" / "street.png"
    photo.parent.mkdir()
    Image.fromarray(np.full((H, W, 3), 200, dtype=np.uint8)).save(photo)
    r = dataclasses.replace(sample(), source=photo)
    assert r.source == str(photo) and r[[0, 2]].source == str(photo) and r.filter(min_score=0.5).source
    assert Result.concat([r, r]).source == str(photo) and Result.concat([r, sample()]).source is None
    (drawn,) = r.save(tmp_path / "out", "overlay")
    assert Image.open(drawn).size == (W, H)
    assert np.asarray(Image.open(drawn))[10, 25].tolist() != [200, 200, 200]  # the third mask is drawn
    coco = json.loads(r.save(tmp_path / "out", "coco")[0].read_text())
    assert coco["images"][0]["file_name"] == "street.png"
    named = r.save(tmp_path / "out", "coco", stem="n", file_name="photos/street.png")[0]
    assert json.loads(named.read_text())["images"][0]["file_name"] == "photos/street.png"
    assert load_result(r.save(tmp_path / "out", "json")[0]).source == str(photo)


def test_the_pipeline_records_the_image_path(tmp_path: Path) -> None:
    from tests.pipelines import SCENE, scripted_pipeline

    Image.fromarray(SCENE.image).save(tmp_path / "scene.png")
    pipeline = scripted_pipeline()
    assert pipeline.predict(tmp_path / "scene.png", SCENE.labels[0]).source == str(tmp_path / "scene.png")
    assert pipeline.predict(SCENE.image, SCENE.labels[0]).source is None
    assert pipeline.predict(str(tmp_path / "scene.png"), "zebra").source == str(tmp_path / "scene.png")


def test_shown_mask_score_is_clipped_and_the_raw_value_kept() -> None:
    masks = np.zeros((2, 4, 4), bool)
    result = Result(masks, np.zeros((2, 4)), ["a", "b"], np.ones(2), np.array([1.02, -0.01]), (4, 4))
    assert [inst.shown_mask_score for inst in result] == [1.0, 0.0]
    np.testing.assert_allclose(result.mask_scores, [1.02, -0.01], rtol=1e-6)
