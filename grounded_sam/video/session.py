"""Memory bounding and object removal for transformers' ``Sam2VideoInferenceSession``.

A streaming session keeps, per object, one output dict per frame it has seen (masks at model resolution,
memory features, object pointer) and every pixel tensor it was given, so its size grows with the video.
The model reads only a fixed window of that history: the mask memories of the last ``num_maskmem - 1``
frames, the object pointers of the last ``max_object_pointers_in_encoder - 1`` frames, and each object's
conditioning frames (where it was prompted). :func:`prune_session` drops the rest after every frame, which
keeps tracking exact while the window fits in ``keep_frames``.

The session has no public API to forget an object, so :func:`remove_objects` re-indexes its per-object
tables; both functions check the attributes they touch and fail clearly if transformers changes them.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable
from typing import Any

_PER_OBJECT_TABLES = (
    "point_inputs_per_obj",
    "mask_inputs_per_obj",
    "output_dict_per_obj",
    "frames_tracked_per_obj",
)
_ID_TABLES = ("_obj_id_to_idx", "_obj_idx_to_id", "obj_ids")
# Per-frame outputs the model never reads back once the frame is done (it uses the current frame's
# values straight from its forward pass): the low- and high-resolution mask logits.
_TRANSIENT_OUTPUTS = ("pred_masks", "high_res_masks")


def memory_window(config: Any) -> int:
    """Number of past frames whose outputs a SAM 2 video model reads when it tracks the next frame.

    ``config`` is a ``Sam2VideoConfig``: the window is the larger of ``num_maskmem - 1`` (mask memories)
    and ``max_object_pointers_in_encoder - 1`` (object pointers), at least 1.
    """
    return max(int(config.num_maskmem) - 1, int(config.max_object_pointers_in_encoder) - 1, 1)


def _check_session(session: Any) -> None:
    missing = [name for name in (*_PER_OBJECT_TABLES, *_ID_TABLES) if not hasattr(session, name)]
    if missing:
        raise TypeError(
            f"{type(session).__name__} lacks {missing}: this transformers version stores its video "
            "session differently; use the transformers release grounded_sam was tested with (5.x)"
        )


def prune_session(session: Any, frame_idx: int, keep_frames: int) -> None:
    """Forget everything the session will not need after tracking ``frame_idx``.

    Keeps the non-conditioning outputs of frames ``frame_idx - keep_frames + 1 .. frame_idx`` and every
    conditioning output (one per object: the frame where it was prompted), drops the mask logits of the
    stored outputs, the consumed prompts, the per-frame tracking flags and the stored pixel tensors
    (streaming passes each frame again with its forward call). Mutates ``session`` in place.
    """
    if keep_frames < 1:
        raise ValueError(f"keep_frames must be >= 1; got {keep_frames}")
    _check_session(session)
    oldest = frame_idx - keep_frames + 1
    for outputs in session.output_dict_per_obj.values():
        recent = outputs["non_cond_frame_outputs"]
        for t in [t for t in recent if t < oldest]:
            del recent[t]
        for stored in outputs.values():
            for out in stored.values():
                for key in _TRANSIENT_OUTPUTS:
                    out.pop(key, None)
    for name in ("point_inputs_per_obj", "mask_inputs_per_obj", "frames_tracked_per_obj"):
        for per_frame in getattr(session, name).values():
            per_frame.clear()
    if session.processed_frames:
        session.processed_frames.clear()


def remove_objects(session: Any, obj_ids: Iterable[int]) -> None:
    """Remove objects (by client id) from the session; the others keep their ids, memories and order."""
    _check_session(session)
    gone = set(obj_ids)
    if not gone & set(session.obj_ids):
        return
    kept = [obj_id for obj_id in session.obj_ids if obj_id not in gone]
    old_index = [session._obj_id_to_idx[obj_id] for obj_id in kept]
    for name in _PER_OBJECT_TABLES:
        table = getattr(session, name)
        setattr(session, name, {new: table[old] for new, old in enumerate(old_index)})
    session._obj_id_to_idx = OrderedDict((obj_id, new) for new, obj_id in enumerate(kept))
    session._obj_idx_to_id = OrderedDict((new, obj_id) for new, obj_id in enumerate(kept))
    session.obj_ids = kept
    session.obj_with_new_inputs = [obj_id for obj_id in session.obj_with_new_inputs if obj_id not in gone]


def frames_held(session: Any) -> int:
    """Largest number of non-conditioning frame outputs any object holds (0 with no object)."""
    return max((len(o["non_cond_frame_outputs"]) for o in session.output_dict_per_obj.values()), default=0)
