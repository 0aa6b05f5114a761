"""Session pruning keeps SAM 2's per-frame state bounded; removing objects keeps the others exact."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from grounded_sam.video.session import frames_held, memory_window, prune_session, remove_objects
from tests.video.conftest import SIZE

BOXES = [[8.0, 8.0, 50.0, 50.0], [60.0, 20.0, 110.0, 90.0], [20.0, 70.0, 70.0, 120.0]]


def _frames(n: int) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.integers(0, 256, (*SIZE, 3), dtype=np.uint8) for _ in range(n)]


def _stream(model, processor, frames, *, keep: int | None = None, remove_at: int | None = None):
    """Track the three boxes through ``frames``; yields (session, {obj_id: mask}) per frame."""
    session = processor.init_video_session(inference_device="cpu")
    for index, frame in enumerate(frames):
        inputs = processor(images=frame, return_tensors="pt")
        if index == 0:
            processor.add_inputs_to_inference_session(
                session, frame_idx=0, obj_ids=[1, 2, 3], input_boxes=[BOXES], original_size=SIZE
            )
        out = model(inference_session=session, frame=inputs.pixel_values[0], frame_idx=index)
        logits = out.pred_masks[:, 0].clone()
        if keep is not None:
            prune_session(session, index, keep)
        if index == remove_at:
            remove_objects(session, [2])
        yield session, dict(zip(out.object_ids, logits, strict=True))


def test_pruned_session_holds_at_most_keep_frames(tiny_model) -> None:
    model, processor = tiny_model
    frames = _frames(20)
    for session, _ in _stream(model, processor, frames, keep=4):
        assert frames_held(session) <= 4
        assert not session.processed_frames
    outputs = session.output_dict_per_obj[0]
    assert sorted(outputs["non_cond_frame_outputs"]) == [16, 17, 18, 19]
    assert list(outputs["cond_frame_outputs"]) == [0]  # the prompt frame stays
    for stored in (*outputs["non_cond_frame_outputs"].values(), *outputs["cond_frame_outputs"].values()):
        assert "high_res_masks" not in stored and "pred_masks" not in stored and "maskmem_features" in stored
    # Without pruning the same run keeps every frame: the bound above is the pruning's doing.
    unpruned = [session for session, _ in _stream(model, processor, frames)][-1]
    assert frames_held(unpruned) == 19 and len(unpruned.processed_frames) == 20


def test_pruning_to_the_memory_window_changes_nothing(tiny_model) -> None:
    model, processor = tiny_model
    frames = _frames(10)
    window = memory_window(model.config)
    assert window == 3
    full = [masks for _, masks in _stream(model, processor, frames)]
    pruned = [masks for _, masks in _stream(model, processor, frames, keep=window)]
    short = [masks for _, masks in _stream(model, processor, frames, keep=1)]
    for a, b in zip(full, pruned, strict=True):
        assert all(torch.equal(a[k], b[k]) for k in a)
    assert any(not torch.equal(a[k], b[k]) for a, b in zip(full, short, strict=True) for k in a)


def test_removed_object_is_gone_and_the_others_unchanged(tiny_model) -> None:
    model, processor = tiny_model
    frames = _frames(8)
    full = [masks for _, masks in _stream(model, processor, frames, keep=3)]
    stream = list(_stream(model, processor, frames, keep=3, remove_at=3))
    for index, (_, masks) in enumerate(stream):
        assert list(masks) == ([1, 2, 3] if index <= 3 else [1, 3])
        assert all(torch.equal(masks[k], full[index][k]) for k in masks)
    session = stream[-1][0]
    assert session.obj_ids == [1, 3] and session.obj_id_to_idx(3) == 1
    assert len(session.output_dict_per_obj) == 2


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="keep_frames"):
        prune_session(object(), 0, 0)
    with pytest.raises(TypeError, match="transformers"):
        prune_session(object(), 0, 2)
