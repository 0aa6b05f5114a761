"""Tracking outputs, written frame by frame with memory that does not grow with the video.

* ``png``: ``masks/000000.png``, one 16-bit PNG per frame whose pixels hold the track id (0: background;
  where masks overlap the smaller one wins).
* ``mot``: ``<name>.txt`` in the MOT-challenge format, one row per track and frame:
  ``frame,id,x,y,w,h,score,-1,-1,-1`` with 1-based frames and boxes in pixels.
* ``coco``: ``<name>.json``, COCO-video style (``videos``, ``images`` with ``video_id`` / ``frame_id``,
  ``annotations`` with compressed-RLE masks and ``track_id``, ``categories`` = the prompt's phrases).
* ``video``: ``<name>.mp4``, the frames with the tracks drawn (colour and "#id label" caption per track).

Every file is atomic: streamed outputs grow in a hidden file next to the target and are renamed over it
by ``close()``; ``abort()`` (or an exception inside a ``TrackWriters`` block) removes them, leaving any
earlier output untouched.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
from collections.abc import Iterable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, Protocol, TextIO

import numpy as np
from PIL import Image

from grounded_sam.annotate import label_color, overlay
from grounded_sam.atomic import atomic_path
from grounded_sam.export.coco import result_to_coco_annotations
from grounded_sam.result import Result
from grounded_sam.video.tracker import FrameTracks

TrackFormat = Literal["png", "mot", "coco", "video"]
TRACK_FORMATS: tuple[TrackFormat, ...] = ("png", "mot", "coco", "video")


class TrackWriter(Protocol):
    """Receives every frame's tracks in order; ``close`` publishes the output, ``abort`` discards it."""

    def write(self, frame_index: int, tracks: FrameTracks) -> None: ...

    def close(self) -> None: ...

    def abort(self) -> None: ...


class _Spill:
    """A hidden file that grows next to ``target`` and is moved over it atomically by ``commit``."""

    def __init__(self, target: Path) -> None:
        target.parent.mkdir(parents=True, exist_ok=True)
        self.target = target
        self.path = target.with_name(f".{target.stem}.{secrets.token_hex(6)}.partial{target.suffix}")

    def commit(self) -> None:
        with atomic_path(self.target) as tmp:
            os.replace(self.path, tmp)

    def discard(self) -> None:
        self.path.unlink(missing_ok=True)


def track_id_map(tracks: FrameTracks) -> np.ndarray:
    """(H, W) int64: the track id shown at each pixel, 0 for background (overlaps go to the smaller mask)."""
    lookup = np.concatenate([[0], tracks.ids]).astype(np.int64)
    return lookup[tracks.result.instance_map() + 1]


class MaskPngWriter:
    """``folder/000000.png``...: a 16-bit PNG of track ids per frame, each written atomically."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.written: list[Path] = []

    def write(self, frame_index: int, tracks: FrameTracks) -> None:
        ids = track_id_map(tracks)
        if ids.max(initial=0) > 65535:
            raise ValueError(f"track id {ids.max()} does not fit a 16-bit PNG")
        path = self.folder / f"{frame_index:06d}.png"
        with atomic_path(path) as tmp:
            Image.fromarray(ids.astype(np.uint16)).save(tmp, format="PNG")
        self.written.append(path)

    def close(self) -> None:
        """Nothing to publish: every frame's PNG was complete when written."""

    def abort(self) -> None:
        """Keeps the PNGs of the frames already written; each is a complete file."""


class MotWriter:
    """MOT-challenge rows ``frame,id,x,y,w,h,score,-1,-1,-1`` (1-based frame, XYWH pixels), one text file."""

    def __init__(self, path: Path) -> None:
        self._spill = _Spill(path)
        self._file: TextIO = open(self._spill.path, "x", encoding="utf-8")  # noqa: SIM115 - kept open

    def write(self, frame_index: int, tracks: FrameTracks) -> None:
        boxes = tracks.result.boxes.astype(np.float64)
        for obj_id, box, score in zip(tracks.ids, boxes, tracks.result.scores, strict=True):
            x, y, w, h = box[0], box[1], box[2] - box[0], box[3] - box[1]
            self._file.write(
                f"{frame_index + 1},{obj_id},{x:.2f},{y:.2f},{w:.2f},{h:.2f},{score:.4f},-1,-1,-1\n"
            )

    def close(self) -> None:
        self._file.close()
        self._spill.commit()

    def abort(self) -> None:
        self._file.close()
        self._spill.discard()


class CocoVideoWriter:
    """A COCO-video JSON; images and annotations are spilled to disk as they come and joined by ``close``.

    Images get ids ``frame_index + 1`` and ``file_name`` from ``frame_names`` (default ``"000000"``, ...);
    categories are ``phrases`` numbered from 1.
    """

    def __init__(
        self,
        path: Path,
        phrases: Sequence[str],
        *,
        video_name: str,
        fps: float,
        frame_names: Sequence[str] | None = None,
    ) -> None:
        self._target = path
        self._images = _Spill(path.with_name(path.stem + "_images.json"))
        self._annotations = _Spill(path.with_name(path.stem + "_annotations.json"))
        self._files = [open(s.path, "x", encoding="utf-8") for s in (self._images, self._annotations)]  # noqa: SIM115
        self.category_ids = {phrase: i for i, phrase in enumerate(phrases, start=1)}
        self.video = {"id": 1, "name": video_name, "fps": float(fps), "width": 0, "height": 0, "length": 0}
        self.frame_names = frame_names
        self._next_annotation = 1

    def write(self, frame_index: int, tracks: FrameTracks) -> None:
        h, w = tracks.result.image_size
        self.video.update(height=h, width=w, length=int(self.video["length"]) + 1)
        name = self.frame_names[frame_index] if self.frame_names else f"{frame_index:06d}"
        entry = {"id": frame_index + 1, "video_id": 1, "frame_id": frame_index, "file_name": name}
        self._append(0, {**entry, "height": h, "width": w})
        annotations = result_to_coco_annotations(
            tracks.result, frame_index + 1, self.category_ids, start_id=self._next_annotation
        )
        for annotation, obj_id in zip(annotations, tracks.ids, strict=True):
            self._append(1, {**annotation, "video_id": 1, "track_id": int(obj_id)})
        self._next_annotation += len(annotations)

    def _append(self, which: int, record: dict[str, Any]) -> None:
        file = self._files[which]
        if file.tell():
            file.write(",\n")
        file.write(json.dumps(record))

    def close(self) -> None:
        for file in self._files:
            file.close()
        categories = [{"id": cid, "name": name} for name, cid in self.category_ids.items()]
        head = {
            "info": {"description": "tracked by grounded_sam"},
            "videos": [self.video],
            "categories": categories,
        }
        try:
            with atomic_path(self._target) as tmp, open(tmp, "x", encoding="utf-8") as out:
                out.write(json.dumps(head)[:-1])  # re-open the object to add the two streamed lists
                for key, spill in (("images", self._images), ("annotations", self._annotations)):
                    out.write(f', "{key}": [\n')
                    with open(spill.path, encoding="utf-8") as part:
                        shutil.copyfileobj(part, out)
                    out.write("\n]")
                out.write("}\n")
        finally:
            self._images.discard()
            self._annotations.discard()

    def abort(self) -> None:
        for file in self._files:
            file.close()
        self._images.discard()
        self._annotations.discard()


class VideoFileWriter:
    """An mp4 (``mp4v``) or avi (``MJPG``) file from (H, W, 3) uint8 RGB frames, published by ``close``."""

    def __init__(self, path: Path, fps: float, size: tuple[int, int]) -> None:
        import cv2

        codec = "MJPG" if path.suffix.lower() == ".avi" else "mp4v"
        self._spill = _Spill(path)
        self.size = size
        self._writer = cv2.VideoWriter(str(self._spill.path), cv2.VideoWriter_fourcc(*codec), fps, size[::-1])
        if not self._writer.isOpened():
            self._writer.release()
            self._spill.discard()
            raise ValueError(f"OpenCV cannot write {path} with codec {codec}; use a .mp4 or .avi name")

    def add(self, rgb: np.ndarray) -> None:
        import cv2

        if rgb.shape[:2] != self.size:
            raise ValueError(f"frame is {rgb.shape[:2]} but the video is {self.size} (H, W)")
        self._writer.write(cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2BGR))

    def close(self) -> None:
        self._writer.release()
        self._spill.commit()

    def abort(self) -> None:
        self._writer.release()
        self._spill.discard()


class OverlayVideoWriter:
    """The video with each track drawn in its own colour, captioned "#id label score"."""

    def __init__(self, path: Path, fps: float, size: tuple[int, int]) -> None:
        self._video = VideoFileWriter(path, fps, size)

    def write(self, frame_index: int, tracks: FrameTracks) -> None:
        result = tracks.result
        captions = [f"#{obj_id} {label}" for obj_id, label in zip(tracks.ids, result.labels, strict=True)]
        colors = {
            caption: label_color(str(obj_id)) for caption, obj_id in zip(captions, tracks.ids, strict=True)
        }
        named = Result(
            result.masks, result.boxes, captions, result.scores, result.mask_scores, result.image_size
        )
        self._video.add(np.asarray(overlay(tracks.image, named, colors=colors)))

    def close(self) -> None:
        self._video.close()

    def abort(self) -> None:
        self._video.abort()


def write_video(frames: Iterable[np.ndarray], path: str | os.PathLike[str], fps: float = 30.0) -> Path:
    """Write (H, W, 3) uint8 RGB frames to an mp4 / avi file atomically; returns the path."""
    target = Path(path)
    video: VideoFileWriter | None = None
    try:
        for rgb in frames:
            video = video or VideoFileWriter(target, fps, (int(rgb.shape[0]), int(rgb.shape[1])))
            video.add(rgb)
    except BaseException:
        if video is not None:
            video.abort()
        raise
    if video is None:
        raise ValueError(f"no frame to write to {target}")
    video.close()
    return target


class TrackWriters:
    """Several writers fed together; as a context manager, closes them all, or aborts them all on error.

    Example::

        writers = open_track_writers("out", ["mot"], name="clip", fps=30, size=(480, 640), phrases=["car"])
        with writers:
            for index, tracks in tracker.track(frames, "car"):
                writers.write(index, tracks)
    """

    def __init__(self, writers: Sequence[TrackWriter]) -> None:
        self.writers = list(writers)

    def write(self, frame_index: int, tracks: FrameTracks) -> None:
        for writer in self.writers:
            writer.write(frame_index, tracks)

    def __enter__(self) -> TrackWriters:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        for writer in self.writers:
            if kind is None:
                writer.close()
            else:
                writer.abort()


def open_track_writers(
    out_dir: str | os.PathLike[str],
    formats: Iterable[str],
    *,
    name: str,
    fps: float,
    size: tuple[int, int],
    phrases: Sequence[str],
    frame_names: Sequence[str] | None = None,
) -> TrackWriters:
    """Writers of ``formats`` (see the module docstring) under ``out_dir``; files are named ``name``.

    ``size`` is the (H, W) of the frames; ``frame_names`` gives COCO ``file_name`` per frame index.
    """
    out = Path(out_dir)
    writers: list[TrackWriter] = []
    try:
        for fmt in dict.fromkeys(formats):
            if fmt == "png":
                writers.append(MaskPngWriter(out / "masks"))
            elif fmt == "mot":
                writers.append(MotWriter(out / f"{name}.txt"))
            elif fmt == "coco":
                writers.append(
                    CocoVideoWriter(
                        out / f"{name}.json", phrases, video_name=name, fps=fps, frame_names=frame_names
                    )
                )
            elif fmt == "video":
                writers.append(OverlayVideoWriter(out / f"{name}.mp4", fps, size))
            else:
                raise ValueError(f"unknown output format {fmt!r}; choose from {', '.join(TRACK_FORMATS)}")
    except BaseException:
        for writer in writers:
            writer.abort()
        raise
    return TrackWriters(writers)
