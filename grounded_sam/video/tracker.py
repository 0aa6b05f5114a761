"""Text-prompted video tracking: a detector finds objects every N frames, SAM 2's video model follows them.

Per frame, the tracks alive so far are propagated by the SAM 2 memory model; on detection frames (the
first, then every ``detect_every``-th) the detector's boxes that overlap no track become new tracks,
prompted to SAM 2 with their box. A track whose mask stays empty for ``max_lost_frames`` frames is
removed. Track ids increase in order of appearance (1, 2, 3, ...) and are never reused.

Memory stays flat as the video grows: frames are read one at a time, the session state lives on the CPU
(only the forward pass runs on ``device``) and after each frame the session keeps only the outputs of the
last ``max_memory_frames`` frames plus each track's prompt frame (see :mod:`grounded_sam.video.session`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from grounded_sam.devices import Device
from grounded_sam.io import load_image
from grounded_sam.ops.boxes import box_ious, masks_to_boxes
from grounded_sam.result import Result
from grounded_sam.text.base import Detections, Detector, TextSegmenter
from grounded_sam.text.prompts import parse_prompt
from grounded_sam.video.session import memory_window, prune_session, remove_objects

logger = logging.getLogger(__name__)


@dataclass(frozen=True, eq=False)
class FrameTracks:
    """The tracked objects of one frame.

    Attributes:
        result: masks (N, H, W) bool, boxes (N, 4) float32 XYXY (x2/y2 exclusive) of the masks, labels (the
            prompt phrase that found each object), scores (the detector's, from the last detection that
            matched the track) and mask_scores (SAM 2's probability that the object is present).
        ids: (N,) int64 track id of each row, stable over the video; rows are sorted by id.
        image: the (H, W, 3) uint8 RGB frame itself, for drawing and writers.
    """

    result: Result
    ids: np.ndarray
    image: np.ndarray

    def __post_init__(self) -> None:
        ids = np.asarray(self.ids, dtype=np.int64).reshape(-1)
        if ids.shape != (len(self.result),):
            raise ValueError(
                f"ids must have shape ({len(self.result)},) to match the result; got {ids.shape}"
            )
        expected = (*self.result.image_size, 3)
        if np.shape(self.image) != expected:
            raise ValueError(f"image must have shape (H, W, 3) = {expected}; got {np.shape(self.image)}")
        object.__setattr__(self, "ids", ids)

    def __len__(self) -> int:
        return len(self.result)


@dataclass
class _Track:
    label: str
    score: float
    box: np.ndarray  # last non-empty box, XYXY
    lost: int = 0  # consecutive frames with an empty mask


@dataclass
class _Run:
    """State of one `VideoTracker.track` call."""

    session: Any
    phrases: list[str]
    size: tuple[int, int] | None = None
    tracks: dict[int, _Track] = field(default_factory=dict)
    next_id: int = 1


class VideoTracker:
    """Tracks the objects a text prompt names through a video, with any :class:`Detector` and SAM 2.

    Args:
        model: a ``transformers.Sam2VideoModel`` (e.g. from ``grounded_sam.sam2.build.build_sam2_video``).
        processor: its ``transformers.Sam2VideoProcessor``.
        detector: phrases → boxes on one (H, W, 3) uint8 RGB frame; a :class:`TextSegmenter` (e.g. SAM 3) is
            used for its boxes.
        detect_every: run the detector on frame 0 and every this many frames (>= 1).
        max_memory_frames: frames of SAM 2 memory kept per object besides its prompt frame. ``None`` keeps
            exactly what the model reads (``session.memory_window``: 15 for the released configs), so
            tracking is the same as with an unbounded session; fewer saves memory at some accuracy.
        iou_match: a detection whose box has at least this IoU with a track's box (the box of its mask, or
            of its last mask while lost) belongs to that track; the others become new tracks, unless SAM 2's
            first mask of one overlaps a track's mask by this IoU (it is then removed at once; its id stays
            used, so ids can have gaps).
        max_lost_frames: a track whose mask has been empty this many frames in a row is removed.
        box_threshold, text_threshold: passed to the detector (``None``: its own defaults).
        device: where the model runs (the model is moved there); ``None`` keeps the model's device.
            The session state and frames stay on the CPU.

    Example::

        tracker = VideoTracker(model, processor, detector, detect_every=15)
        for index, tracks in tracker.track(open_frames("street.mp4"), "person. car"):
            print(index, tracks.ids, tracks.result.labels)
    """

    def __init__(
        self,
        model: Any,
        processor: Any,
        detector: Detector | TextSegmenter,
        *,
        detect_every: int = 30,
        max_memory_frames: int | None = None,
        iou_match: float = 0.5,
        max_lost_frames: int = 30,
        box_threshold: float | None = None,
        text_threshold: float | None = None,
        device: Device = None,
    ) -> None:
        if detect_every < 1:
            raise ValueError(f"detect_every must be >= 1; got {detect_every}")
        if max_memory_frames is not None and max_memory_frames < 1:
            raise ValueError(
                f"max_memory_frames must be >= 1 (or None for the model's window); got {max_memory_frames}"
            )
        if not 0.0 < iou_match <= 1.0:
            raise ValueError(f"iou_match must be in (0, 1]; got {iou_match}")
        if max_lost_frames < 1:
            raise ValueError(f"max_lost_frames must be >= 1; got {max_lost_frames}")
        if not isinstance(detector, Detector | TextSegmenter):
            raise TypeError(
                f"detector must have a detect(image, phrases, ...) or segment(...) method; "
                f"got {type(detector).__name__}"
            )
        self.model = model.to(device) if device is not None else model
        self.model.eval()
        self.processor = processor
        self.detector = detector
        self.detect_every = detect_every
        self.memory_frames = max_memory_frames or memory_window(model.config)
        self.iou_match = iou_match
        self.max_lost_frames = max_lost_frames
        self.thresholds = {"box_threshold": box_threshold, "text_threshold": text_threshold}

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def new_session(self) -> Any:
        """An empty streaming session: inference on the model's device, state and frames on the CPU."""
        return self.processor.init_video_session(
            inference_device=self.device,
            inference_state_device="cpu",
            video_storage_device="cpu",
            processing_device="cpu",
            dtype=self.model.dtype,
        )

    def track(self, frames: Iterable[Any], text: str | Sequence[str]) -> Iterator[tuple[int, FrameTracks]]:
        """Yield ``(frame_index, FrameTracks)`` for every frame of ``frames``, as they are read.

        Args:
            frames: (H, W, 3) uint8 RGB arrays (or anything :func:`grounded_sam.io.load_image` takes), e.g.
                :func:`grounded_sam.video.open_frames`; all of one size.
            text: phrases, "person. car" or ["person", "car"]; every label is one of them.

        Raises:
            ValueError: the prompt holds no phrase, or a frame's size differs from the first frame's.
        """
        phrases = parse_prompt(text)
        if not phrases:
            raise ValueError(f"the prompt {text!r} holds no phrase; give e.g. 'person. car'")
        run = _Run(self.new_session(), phrases)
        for index, frame in enumerate(frames):
            yield index, self._step(run, index, load_image(frame))

    def _step(self, run: _Run, index: int, image: np.ndarray) -> FrameTracks:
        size = (int(image.shape[0]), int(image.shape[1]))
        if run.size is None:
            run.size = size
        elif size != run.size:
            raise ValueError(
                f"frame {index} is {size[0]}x{size[1]} (HxW) but the video is {run.size[0]}x{run.size[1]}"
            )
        pixels = None
        masks, presence = np.zeros((0, *size), dtype=bool), np.zeros(0, dtype=np.float32)
        if run.tracks:
            pixels = self._pixels(image)
            masks, presence = self._forward(run, index, pixels)
        if index % self.detect_every == 0:
            detections = self._detect(image, run.phrases)
            new_ids = self._add_new_tracks(run, index, detections, masks)
            if new_ids:
                # A second pass segments the new tracks (it recomputes the old ones identically, from
                # memories of earlier frames, but the image features are cached).
                pixels = self._pixels(image) if pixels is None else pixels
                masks, presence = self._forward(run, index, pixels)
                masks, presence = self._drop_duplicates(run, new_ids, masks, presence)
        frame = self._update_tracks(run, image, masks, presence)
        prune_session(run.session, index, self.memory_frames)
        return frame

    def _detect(self, image: np.ndarray, phrases: list[str]) -> Detections:
        if isinstance(self.detector, Detector):
            return self.detector.detect(image, phrases, **self.thresholds)
        return self.detector.segment(image, phrases, **self.thresholds).detections

    def _pixels(self, image: np.ndarray) -> torch.Tensor:
        if not image.flags.writeable:  # decoded images can be read-only; torch.from_numpy warns about them
            image = image.copy()
        encoded = self.processor(images=image, return_tensors="pt")
        return encoded["pixel_values"][0]

    def _forward(self, run: _Run, index: int, pixels: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        """Masks (T, H, W) bool and presence (T,) of every track in the session, in session order."""
        output = self.model(inference_session=run.session, frame_idx=index, frame=pixels)
        if list(output.object_ids) != list(run.tracks):
            raise RuntimeError(
                f"SAM 2 session objects {output.object_ids} differ from the tracks {list(run.tracks)}"
            )
        masks = self.processor.post_process_masks([output.pred_masks], original_sizes=[list(run.size)])[0]
        presence = torch.sigmoid(output.object_score_logits.float()).reshape(-1)
        return masks[:, 0].cpu().numpy(), presence.cpu().numpy()

    def _add_new_tracks(self, run: _Run, index: int, found: Detections, masks: np.ndarray) -> list[int]:
        """Turn the detections that match no track into new tracks prompted on frame ``index``."""
        if len(found) == 0:
            return []
        track_boxes = _current_boxes(run, masks)
        matched = np.zeros(len(found), dtype=bool)
        if len(track_boxes):
            ious = box_ious(found.boxes, track_boxes)
            matched = ious.max(axis=1) >= self.iou_match
            # A matched detection refreshes the score of the track it overlaps most.
            ids = list(run.tracks)
            for det in np.flatnonzero(matched):
                run.tracks[ids[int(ious[det].argmax())]].score = float(found.scores[det])
        accepted: list[int] = []
        for det in np.argsort(-found.scores, kind="stable"):
            if matched[det]:
                continue
            if accepted and box_ious(found.boxes[det], found.boxes[accepted]).max() >= self.iou_match:
                continue  # a duplicate of a box accepted just now
            accepted.append(int(det))
        if not accepted:
            return []
        new_ids = list(range(run.next_id, run.next_id + len(accepted)))
        run.next_id += len(accepted)
        for obj_id, det in zip(new_ids, accepted, strict=True):
            run.tracks[obj_id] = _Track(found.labels[det], float(found.scores[det]), found.boxes[det].copy())
        self.processor.add_inputs_to_inference_session(
            run.session,
            frame_idx=index,
            obj_ids=list(new_ids),  # the session consumes (empties) the list it is given
            input_boxes=[[found.boxes[det].tolist() for det in accepted]],
            original_size=run.size,
        )
        logger.debug("frame %d: new tracks %s", index, new_ids)
        return new_ids

    def _drop_duplicates(
        self, run: _Run, new_ids: list[int], masks: np.ndarray, presence: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Remove the new tracks whose first mask overlaps an older (or earlier new) track's mask by
        ``iou_match`` or more: the detection was an object already tracked, whose box had drifted."""
        ids = list(run.tracks)
        flat = masks.reshape(len(ids), -1)
        keep = [row for row, obj_id in enumerate(ids) if obj_id not in new_ids]
        duplicates = []
        for row in range(len(keep), len(ids)):
            if keep and _mask_ious(flat[row], flat[keep]).max() >= self.iou_match:
                duplicates.append(ids[row])
            else:
                keep.append(row)
        if not duplicates:
            return masks, presence
        remove_objects(run.session, duplicates)
        for obj_id in duplicates:
            del run.tracks[obj_id]
        logger.debug("new tracks %s duplicate older ones; removed", duplicates)
        return masks[keep], presence[keep]

    def _update_tracks(
        self, run: _Run, image: np.ndarray, masks: np.ndarray, presence: np.ndarray
    ) -> FrameTracks:
        """The frame's visible tracks; then count lost frames and drop the tracks lost too long."""
        ids = list(run.tracks)
        boxes = masks_to_boxes(masks)
        visible = masks.any(axis=(1, 2))
        rows = np.flatnonzero(visible)
        shown = [run.tracks[ids[r]] for r in rows]
        frame = FrameTracks(
            Result(
                masks=masks[rows],
                boxes=boxes[rows],
                labels=[track.label for track in shown],
                scores=np.array([track.score for track in shown], dtype=np.float32),
                mask_scores=presence[rows],
                image_size=run.size,
            ),
            ids=np.array([ids[r] for r in rows], dtype=np.int64),
            image=image,
        )
        dropped = []
        for row, obj_id in enumerate(ids):
            track = run.tracks[obj_id]
            if visible[row]:
                track.lost, track.box = 0, boxes[row]
            else:
                track.lost += 1
                if track.lost >= self.max_lost_frames:
                    dropped.append(obj_id)
        if dropped:
            remove_objects(run.session, dropped)
            for obj_id in dropped:
                del run.tracks[obj_id]
            logger.debug("dropped tracks %s (lost for %d frames)", dropped, self.max_lost_frames)
        return frame


def _current_boxes(run: _Run, masks: np.ndarray) -> np.ndarray:
    """(T, 4) box of each track: of its mask on this frame, else its last seen box."""
    boxes = np.array([track.box for track in run.tracks.values()], dtype=np.float32).reshape(-1, 4)
    seen = masks.any(axis=(1, 2))
    boxes[seen] = masks_to_boxes(masks[seen])
    return boxes


def _mask_ious(mask: np.ndarray, others: np.ndarray) -> np.ndarray:
    """IoU of one flattened bool mask (P,) with each of ``others`` (K, P) → (K,); 0 where both are empty."""
    inter = (others & mask).sum(axis=1)
    union = (others | mask).sum(axis=1)
    return inter / np.maximum(union, 1)
