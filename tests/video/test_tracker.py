"""VideoTracker: stable ids on moving shapes, new and vanishing objects, parity with transformers."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import numpy as np
import pytest
import torch

from grounded_sam.text.base import Detections
from grounded_sam.video import FrameTracks, VideoTracker
from tests.video.conftest import SIZE
from tests.video.synthetic import ColorDetector, OracleVideoModel, render_moving_shapes


class FixedDetector:
    """Returns the same boxes on every call and records the frames it saw."""

    def __init__(self, boxes: Sequence[Sequence[float]], scores: Sequence[float] | None = None) -> None:
        self.boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
        self.scores = np.asarray(scores if scores is not None else [0.9] * len(self.boxes), dtype=np.float32)
        self.calls = 0

    def detect(self, image, phrases, *, box_threshold=None, text_threshold=None) -> Detections:
        self.calls += 1
        return Detections(self.boxes, self.scores, np.zeros(len(self.boxes), dtype=np.int64), tuple(phrases))


def _video(shapes, n: int) -> list:
    return list(render_moving_shapes(shapes, n, SIZE))


def test_ids_follow_objects_and_new_objects_get_new_ids(tiny_model, shapes) -> None:
    model, processor = tiny_model
    truth = _video(shapes, 24)
    tracker = VideoTracker(
        OracleVideoModel(model, shapes, SIZE),
        processor,
        ColorDetector(shapes),
        detect_every=3,
        max_lost_frames=4,
    )
    owner: dict[int, int] = {}  # track id -> ground-truth object
    seen_ids = []
    for index, tracks in tracker.track((f.image for f in truth), [s.label for s in shapes]):
        gt = truth[index]
        assert isinstance(tracks, FrameTracks) and tracks.result.image_size == SIZE
        assert np.array_equal(tracks.ids, np.sort(tracks.ids))
        for row, obj_id in enumerate(tracks.ids):
            ious = [
                (tracks.result.masks[row] & m).sum() / (tracks.result.masks[row] | m).sum() for m in gt.masks
            ]
            best = int(gt.object_ids[int(np.argmax(ious))])
            assert max(ious) > 0.4  # the oracle's masks pass through SAM 2's 4-pixel low-res grid
            assert owner.setdefault(int(obj_id), best) == best, (
                f"track {obj_id} jumped objects on frame {index}"
            )
            assert tracks.result.labels[row] == shapes[best].label
        seen_ids.append(set(tracks.ids.tolist()))
    assert seen_ids[0] == {1, 2, 3}
    # The square enters on frame 6 (a detection frame) and gets the next id; it leaves on frame 14.
    assert seen_ids[5] == {1, 2, 3} and seen_ids[6] == {1, 2, 3, 4} and owner[4] == 3
    assert 4 not in seen_ids[14]
    assert all(ids <= {1, 2, 3, 4} for ids in seen_ids), "an object already tracked got a second id"


def test_vanished_track_is_dropped_and_its_id_not_reused(tiny_model, shapes) -> None:
    model, processor = tiny_model
    # The square leaves on frame 14; a second purple square enters on frame 20.
    again = replace(shapes[3], center=(90.0, 30.0), enter=20, leave=None)
    scene = (*shapes, again)
    tracker = VideoTracker(
        OracleVideoModel(model, scene, SIZE),
        processor,
        ColorDetector(scene),
        detect_every=2,
        max_lost_frames=3,
    )
    sessions = []
    new_session = tracker.new_session
    tracker.new_session = lambda: sessions.append(new_session()) or sessions[-1]
    ids = []
    for index, tracks in tracker.track((f.image for f in _video(scene, 23)), [s.label for s in shapes]):
        ids.append(set(tracks.ids.tolist()))
        if index == 15:  # empty on frames 14 and 15: still tracked
            assert sessions[0].obj_ids == [1, 2, 3, 4]
        if index == 16:  # the third empty frame: removed from the session
            assert sessions[0].obj_ids == [1, 2, 3]
    assert 4 in ids[13] and 4 not in ids[14]
    assert ids[19] == {1, 2, 3}
    new = ids[20] - {1, 2, 3}
    assert len(new) == 1 and min(new) > 4, f"the returning square got {new}"


def test_first_frames_match_transformers_called_directly(tiny_model, shapes) -> None:
    """With one detection on frame 0, the tracker is transformers' streaming loop, pruning included."""
    model, processor = tiny_model
    frames = [f.image for f in _video(shapes, 12)]
    boxes = [[10.0, 12.0, 60.0, 70.0], [64.0, 30.0, 120.0, 100.0]]
    session = processor.init_video_session(inference_device="cpu")
    expected = []
    for index, frame in enumerate(frames):
        inputs = processor(images=frame, return_tensors="pt")
        if index == 0:
            processor.add_inputs_to_inference_session(
                session,
                frame_idx=0,
                obj_ids=[1, 2],
                input_boxes=[boxes],
                original_size=inputs.original_sizes[0],
            )
        out = model(inference_session=session, frame=inputs.pixel_values[0], frame_idx=index)
        expected.append(
            processor.post_process_masks([out.pred_masks], original_sizes=inputs.original_sizes)[0]
        )
    tracker = VideoTracker(model, processor, FixedDetector(boxes), detect_every=100, max_lost_frames=100)
    assert tracker.memory_frames == 3  # the tiny model reads 3 past frames; the rest is pruned
    for index, tracks in tracker.track(frames, "thing"):
        full = np.zeros((2, *SIZE), dtype=bool)
        full[tracks.ids - 1] = tracks.result.masks
        assert np.array_equal(full, expected[index][:, 0].numpy()), f"frame {index} differs"
        assert set(tracks.ids.tolist()) == {i + 1 for i in range(2) if expected[index][i].any()}
    assert expected[0][:, 0].any(), "a vacuous comparison: no mask at all on frame 0"


class DoubledDetector(ColorDetector):
    """Each object twice: its box and a shifted copy (IoU about 0.8) with a lower score; counts calls."""

    calls = 0

    def detect(self, image, phrases, **thresholds) -> Detections:
        self.calls += 1
        found = super().detect(image, phrases, **thresholds)
        shifted = found.boxes + np.array([2, 0, 2, 0], dtype=np.float32)
        return Detections(
            np.concatenate([shifted, found.boxes]),
            np.concatenate([found.scores * 0.5, found.scores]),
            np.concatenate([found.phrase_ids, found.phrase_ids]),
            found.phrases,
        )


def test_detector_schedule_matching_and_duplicates(tiny_model, shapes) -> None:
    model, processor = tiny_model
    detector = DoubledDetector(shapes[:3])
    tracker = VideoTracker(
        OracleVideoModel(model, shapes[:3], SIZE), processor, detector, detect_every=3, max_lost_frames=100
    )
    out = list(tracker.track((f.image for f in _video(shapes[:3], 7)), [s.label for s in shapes]))
    assert detector.calls == 3  # frames 0, 3 and 6
    assert all(t.ids.tolist() == [1, 2, 3] for _, t in out)
    assert np.allclose(out[0][1].result.scores, 1.0)  # the better-scored copy made each track


class LooseDetector(ColorDetector):
    """Exact boxes on the first call, then boxes padded by 14 pixels a side (IoU with the object < 0.5)."""

    calls = 0

    def detect(self, image, phrases, **thresholds) -> Detections:
        self.calls += 1
        found = super().detect(image, phrases, **thresholds)
        pad = np.array([-14, -14, 14, 14], dtype=np.float32) if self.calls > 1 else 0
        return Detections(found.boxes + pad, found.scores, found.phrase_ids, found.phrases)


def test_a_new_mask_over_a_tracked_object_is_dropped(tiny_model, shapes, monkeypatch) -> None:
    import grounded_sam.video.tracker as tracker_module

    removed = []
    remove = tracker_module.remove_objects
    monkeypatch.setattr(
        tracker_module, "remove_objects", lambda s, ids: removed.append(list(ids)) or remove(s, ids)
    )
    model, processor = tiny_model
    static = shapes[:3]
    tracker = VideoTracker(
        OracleVideoModel(model, static, SIZE),
        processor,
        LooseDetector(static),
        detect_every=4,
        max_lost_frames=100,
    )
    out = list(tracker.track((f.image for f in _video(static, 5)), [s.label for s in static]))
    assert all(t.ids.tolist() == [1, 2, 3] for _, t in out)
    # On frame 4 padded boxes pass the box test (the largest object's may not), SAM 2 segments them, and
    # their masks equal the tracks': they are removed at once, never reported.
    assert len(removed) == 1 and removed[0] and min(removed[0]) > 3


def test_input_errors(tiny_model) -> None:
    model, processor = tiny_model
    detector = FixedDetector([[0, 0, 10, 10]])
    for bad in ({"detect_every": 0}, {"iou_match": 0.0}, {"max_lost_frames": 0}, {"max_memory_frames": 0}):
        with pytest.raises(ValueError):
            VideoTracker(model, processor, detector, **bad)
    with pytest.raises(TypeError, match="detect"):
        VideoTracker(model, processor, object())
    tracker = VideoTracker(model, processor, detector)
    with pytest.raises(ValueError, match="no phrase"):
        list(tracker.track([np.zeros((*SIZE, 3), np.uint8)], " . "))
    frames = [np.zeros((*SIZE, 3), np.uint8), np.zeros((64, 64, 3), np.uint8)]
    with pytest.raises(ValueError, match="frame 1"):
        list(tracker.track(frames, "thing"))
    torch.manual_seed(0)
