"""Track writers: files that read back to the tracks written (PNG ids, MOT rows, COCO RLE), atomically."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image
from pycocotools.coco import COCO

from grounded_sam.ops.rle import rle_to_mask
from grounded_sam.result import Result
from grounded_sam.video import FrameTracks, open_frames, open_track_writers
from tests.video.synthetic import random_moving_shapes, render_moving_shapes

SIZE = (48, 64)
PHRASES = ["red thing", "green thing", "blue thing"]


def _tracks(n: int = 4) -> list[FrameTracks]:
    """Ground truth of a small moving-shapes video as tracks: id = object + 7, label by object."""
    out = []
    for frame in render_moving_shapes(random_moving_shapes(3, SIZE, seed=3), n, SIZE):
        k = len(frame.object_ids)
        result = Result(
            frame.masks,
            frame.boxes,
            [PHRASES[i] for i in frame.object_ids],
            np.linspace(0.5, 0.9, k),
            np.ones(k),
            SIZE,
        )
        out.append(FrameTracks(result, frame.object_ids + 7, frame.image))
    return out


def _write(out_dir, tracks, formats=("png", "mot", "coco", "video")) -> None:
    writers = open_track_writers(out_dir, formats, name="clip", fps=10, size=SIZE, phrases=PHRASES)
    with writers:
        for index, frame in enumerate(tracks):
            writers.write(index, frame)


def test_files_read_back_to_the_tracks(tmp_path) -> None:
    tracks = _tracks()
    _write(tmp_path, tracks)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.json", "clip.mp4", "clip.txt", "masks"]

    for index, frame in enumerate(tracks):
        ids = np.asarray(Image.open(tmp_path / "masks" / f"{index:06d}.png"))
        assert ids.dtype == np.uint16 and ids.shape == SIZE
        for row, obj_id in enumerate(frame.ids):
            assert np.array_equal(ids == obj_id, frame.result.masks[row])  # the GT masks are disjoint
        assert np.array_equal(ids == 0, ~frame.result.masks.any(axis=0))

    rows = [line.split(",") for line in (tmp_path / "clip.txt").read_text().splitlines()]
    assert len(rows) == sum(len(t) for t in tracks)
    first = tracks[0]
    x1, y1, x2, y2 = first.result.boxes[0]
    assert rows[0][:2] == ["1", str(first.ids[0])] and rows[0][7:] == ["-1", "-1", "-1"]
    np.testing.assert_allclose([float(v) for v in rows[0][2:7]], [x1, y1, x2 - x1, y2 - y1, 0.5], atol=0.01)
    assert {r[0] for r in rows} == {"1", "2", "3", "4"}

    data = json.loads((tmp_path / "clip.json").read_text())
    assert data["videos"] == [{"id": 1, "name": "clip", "fps": 10.0, "width": 64, "height": 48, "length": 4}]
    assert [c["name"] for c in data["categories"]] == PHRASES
    assert [(im["id"], im["frame_id"], im["video_id"]) for im in data["images"]] == [
        (i + 1, i, 1) for i in range(4)
    ]
    coco = COCO(str(tmp_path / "clip.json"))
    for index, frame in enumerate(tracks):
        anns = coco.loadAnns(coco.getAnnIds(imgIds=[index + 1]))
        assert [a["track_id"] for a in anns] == frame.ids.tolist()
        for ann, mask, label in zip(anns, frame.result.masks, frame.result.labels, strict=True):
            assert np.array_equal(rle_to_mask(ann["segmentation"]), mask)
            assert np.array_equal(coco.annToMask(ann).astype(bool), mask)
            assert data["categories"][ann["category_id"] - 1]["name"] == label
    assert len({a["id"] for a in data["annotations"]}) == len(data["annotations"])

    video = open_frames(tmp_path / "clip.mp4")
    assert (video.size, video.fps, len(list(video))) == (SIZE, 10.0, 4)
    assert not list(tmp_path.glob(".*"))  # no temporary files left


def test_an_error_leaves_no_partial_output(tmp_path) -> None:
    (tmp_path / "clip.txt").write_text("earlier run\n")
    tracks = _tracks(2)
    writers = open_track_writers(
        tmp_path, ["mot", "coco", "video"], name="clip", fps=5, size=SIZE, phrases=PHRASES
    )
    with pytest.raises(RuntimeError, match="boom"), writers:
        writers.write(0, tracks[0])
        raise RuntimeError("boom")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.txt"]
    assert (tmp_path / "clip.txt").read_text() == "earlier run\n"


def test_empty_frames_and_unknown_format(tmp_path) -> None:
    empty = FrameTracks(Result.empty(SIZE), np.zeros(0), np.zeros((*SIZE, 3), np.uint8))
    _write(tmp_path, [empty, empty], ("png", "mot", "coco"))
    assert (tmp_path / "clip.txt").read_text() == ""
    data = json.loads((tmp_path / "clip.json").read_text())
    assert len(data["images"]) == 2 and data["annotations"] == []
    assert not np.asarray(Image.open(tmp_path / "masks" / "000001.png")).any()
    with pytest.raises(ValueError, match="unknown output format"):
        open_track_writers(tmp_path, ["mot", "gif"], name="x", fps=1, size=SIZE, phrases=PHRASES)
    assert not (tmp_path / "x.txt").exists() and not list(tmp_path.glob(".x*"))
