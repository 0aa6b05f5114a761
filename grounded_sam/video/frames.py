"""Video input: a video file or a folder of frame images, read lazily as (H, W, 3) uint8 RGB frames.

Video files are decoded with OpenCV (FFmpeg inside ``opencv-python-headless``); a folder's images are taken
in natural order (``frame2.png`` before ``frame10.png``) and decoded with :func:`grounded_sam.io.load_image`.
Opening checks that the first frame decodes, so an unreadable or empty input fails at once with a message,
not in the middle of tracking.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from grounded_sam.io import IMAGE_SUFFIXES, load_image

logger = logging.getLogger(__name__)

DEFAULT_FPS = 30.0
"""Frame rate given to a folder of frames (and to a video whose container does not say)."""


@dataclass(frozen=True)
class VideoFrames:
    """A re-iterable, lazy sequence of frames; each iteration decodes the source again from the start.

    Attributes:
        source: the video file or frame folder.
        kind: ``"video"`` or ``"folder"``.
        fps: frames per second (the container's, or the one given for a folder).
        size: (H, W) of every frame.
        frame_count: number of frames; for a video file the container's figure, which can be off by a few
            frames for some codecs, or ``None`` when the container does not say.
        files: the frame images of a folder, in order (empty for a video file).

    Example::

        frames = open_frames("clip.mp4")
        for rgb in frames:  # (H, W, 3) uint8
            ...
    """

    source: Path
    kind: Literal["video", "folder"]
    fps: float
    size: tuple[int, int]
    frame_count: int | None
    files: tuple[Path, ...] = ()

    def __iter__(self) -> Iterator[np.ndarray]:
        if self.kind == "folder":
            return self._iter_folder()
        return _iter_video(self.source, self.size)

    def _iter_folder(self) -> Iterator[np.ndarray]:
        for path in self.files:
            rgb = load_image(path)
            if rgb.shape[:2] != self.size:
                raise ValueError(
                    f"frame {path} is {rgb.shape[0]}x{rgb.shape[1]} (HxW) but the first frame is "
                    f"{self.size[0]}x{self.size[1]}; every frame of a video must have the same size"
                )
            yield rgb


def open_frames(source: str | os.PathLike[str], *, fps: float | None = None) -> VideoFrames:
    """Open a video file or a folder of frame images for lazy reading.

    Args:
        source: a video file OpenCV can decode (mp4, avi, mov, mkv, webm, ...) or a folder whose image files
            (not searched recursively, hidden files skipped) are the frames, in natural order.
        fps: overrides the frame rate (needed for a folder; defaults to ``DEFAULT_FPS`` there).

    Raises:
        FileNotFoundError: ``source`` does not exist.
        ValueError: a folder with no image, a file that is not a decodable video, or a video with no frame.
    """
    path = Path(source).expanduser()
    if fps is not None and not fps > 0:
        raise ValueError(f"fps must be positive; got {fps}")
    if not path.exists():
        raise FileNotFoundError(f"video or frame folder {path} does not exist")
    if path.is_dir():
        return _open_folder(path, fps)
    return _open_video(path, fps)


def natural_key(name: str) -> tuple[tuple[int, int | str], ...]:
    """Sort key that orders the digit runs of ``name`` by value: ``f2`` < ``f10``; case-insensitive."""
    parts = re.split(r"(\d+)", name.lower())
    return tuple((0, int(part)) if part.isdigit() else (1, part) for part in parts if part)


def _open_folder(path: Path, fps: float | None) -> VideoFrames:
    files = sorted(
        (
            child
            for child in path.iterdir()
            if child.is_file() and not child.name.startswith(".") and child.suffix.lower() in IMAGE_SUFFIXES
        ),
        key=lambda child: natural_key(child.name),
    )
    if not files:
        raise ValueError(
            f"folder {path} holds no frame images (looked for {', '.join(sorted(IMAGE_SUFFIXES))}); "
            "pass a video file or a folder of frames"
        )
    first = load_image(files[0])
    return VideoFrames(
        source=path,
        kind="folder",
        fps=float(fps or DEFAULT_FPS),
        size=(int(first.shape[0]), int(first.shape[1])),
        frame_count=len(files),
        files=tuple(files),
    )


def _open_capture(path: Path) -> Any:  # a cv2.VideoCapture
    import cv2

    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        capture.release()
        raise ValueError(
            f"{path} is not a video OpenCV can open (unknown container or codec, or a corrupt file); "
            "convert it to mp4 (H.264) or pass a folder of frame images"
        )
    return capture


def _open_video(path: Path, fps: float | None) -> VideoFrames:
    import cv2

    if path.stat().st_size == 0:
        raise ValueError(f"video file {path} is empty (0 bytes)")
    capture = _open_capture(path)
    try:
        ok, bgr = capture.read()
        container_fps = float(capture.get(cv2.CAP_PROP_FPS) or 0.0)
        count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
    finally:
        capture.release()
    if not ok or bgr is None:
        raise ValueError(f"video {path} has no decodable frame (empty or corrupt)")
    if fps is None and not container_fps > 0:
        logger.warning("%s does not give its frame rate; using %.1f fps", path, DEFAULT_FPS)
    return VideoFrames(
        source=path,
        kind="video",
        fps=float(fps or (container_fps if container_fps > 0 else DEFAULT_FPS)),
        size=(int(bgr.shape[0]), int(bgr.shape[1])),
        frame_count=count if count > 0 else None,
    )


def _iter_video(path: Path, size: tuple[int, int]) -> Iterator[np.ndarray]:
    import cv2

    capture = _open_capture(path)
    try:
        while True:
            ok, bgr = capture.read()
            if not ok:
                return
            if bgr.shape[:2] != size:
                raise ValueError(f"a frame of {path} changes size to {bgr.shape[:2]} (first frame: {size})")
            yield cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    finally:
        capture.release()
