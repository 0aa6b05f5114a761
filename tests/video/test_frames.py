"""Reading videos and frame folders lazily, with clear errors for unusable input."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from grounded_sam.video import open_frames, write_video
from grounded_sam.video.frames import natural_key


def _levels(n: int) -> list[int]:
    return [20 + (200 // n) * i for i in range(n)]


def _frames(n: int, size: tuple[int, int] = (48, 64)) -> list[np.ndarray]:
    # Flat grey levels survive lossy codecs well enough to identify each frame.
    return [np.full((*size, 3), level, dtype=np.uint8) for level in _levels(n)]


def test_video_file_round_trip(tmp_path) -> None:
    path = write_video(_frames(5), tmp_path / "clip.mp4", fps=12.0)
    frames = open_frames(path)
    assert (frames.kind, frames.size, frames.fps, frames.frame_count) == ("video", (48, 64), 12.0, 5)
    decoded = list(frames)
    assert len(decoded) == 5
    assert all(f.shape == (48, 64, 3) and f.dtype == np.uint8 for f in decoded)
    np.testing.assert_allclose([f.mean() for f in decoded], _levels(5), atol=4)
    assert len(list(frames)) == 5  # iterating again decodes again


def test_folder_is_read_in_natural_order(tmp_path) -> None:
    for i, rgb in enumerate(_frames(11)):
        Image.fromarray(rgb).save(tmp_path / f"frame{i}.png")
    (tmp_path / ".hidden.png").write_bytes(b"not an image")
    (tmp_path / "notes.txt").write_text("ignored")
    frames = open_frames(tmp_path, fps=5)
    assert [p.name for p in frames.files][:3] == ["frame0.png", "frame1.png", "frame2.png"]
    assert frames.files[-1].name == "frame10.png"
    assert (frames.kind, frames.fps, frames.frame_count) == ("folder", 5.0, 11)
    assert [int(f[0, 0, 0]) for f in frames] == _levels(11)


def test_natural_key() -> None:
    names = ["f10.png", "F2.png", "f1.png", "f02b.png"]
    assert sorted(names, key=natural_key) == ["f1.png", "F2.png", "f02b.png", "f10.png"]


def test_folder_frame_of_another_size_fails_when_reached(tmp_path) -> None:
    Image.fromarray(_frames(1)[0]).save(tmp_path / "0.png")
    Image.fromarray(_frames(1, (10, 10))[0]).save(tmp_path / "1.png")
    frames = open_frames(tmp_path)
    with pytest.raises(ValueError, match="same size"):
        list(frames)


def test_unusable_inputs(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        open_frames(tmp_path / "missing.mp4")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no frame images"):
        open_frames(tmp_path / "empty")
    (tmp_path / "zero.mp4").write_bytes(b"")
    with pytest.raises(ValueError, match="empty"):
        open_frames(tmp_path / "zero.mp4")
    (tmp_path / "junk.mp4").write_bytes(b"garbage" * 100)
    with pytest.raises(ValueError, match=r"not a video OpenCV can open|no decodable frame"):
        open_frames(tmp_path / "junk.mp4")
    with pytest.raises(ValueError, match="fps"):
        open_frames(tmp_path, fps=0)
