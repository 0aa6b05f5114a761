from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from grounded_sam.atomic import (
    atomic_path,
    atomic_write_bytes,
    atomic_write_text,
    atomic_write_text_if_changed,
)


class WriterFailed(Exception):
    pass


def test_write_bytes_and_text_create_parents(tmp_path: Path) -> None:
    target = tmp_path / "a" / "b" / "data.bin"
    assert atomic_write_bytes(target, b"\x00\x01") == target
    assert target.read_bytes() == b"\x00\x01"
    atomic_write_text(tmp_path / "t" / "note.txt", "héllo")
    assert (tmp_path / "t" / "note.txt").read_bytes() == "héllo".encode()
    atomic_write_bytes(target, b"new")  # replaces an existing file
    assert target.read_bytes() == b"new"
    assert sorted(p.name for p in target.parent.iterdir()) == ["data.bin"]  # no temp file left


def test_failed_writer_leaves_old_file_intact(tmp_path: Path) -> None:
    target = tmp_path / "keep.txt"
    target.write_text("old")
    with pytest.raises(WriterFailed), atomic_path(target) as tmp:
        tmp.write_text("half-written")
        raise WriterFailed
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["keep.txt"]


def test_failed_writer_creates_nothing(tmp_path: Path) -> None:
    with pytest.raises(WriterFailed), atomic_path(tmp_path / "new.txt") as tmp:
        tmp.write_text("x")
        raise WriterFailed
    assert list(tmp_path.iterdir()) == []


def test_temp_path_is_fresh_sibling_with_same_suffix(tmp_path: Path) -> None:
    target = tmp_path / "img.png"
    with atomic_path(target) as tmp:
        assert tmp.parent == tmp_path
        assert tmp.suffix == ".png"
        assert not tmp.exists()
        assert not target.exists()  # nothing visible before the rename
        Image.new("RGB", (3, 2), (1, 2, 3)).save(tmp)  # format chosen from the suffix
    assert Image.open(target).getpixel((0, 0)) == (1, 2, 3)
    assert [p.name for p in tmp_path.iterdir()] == ["img.png"]


def test_writer_that_writes_nothing_is_an_error(tmp_path: Path) -> None:
    target = tmp_path / "x.txt"
    target.write_text("old")
    with pytest.raises(FileNotFoundError, match="did not create"), atomic_path(target):
        pass
    assert target.read_text() == "old"


def test_a_failing_cleanup_does_not_hide_the_first_error(tmp_path: Path, monkeypatch) -> None:
    def refuse(self, missing_ok=False):
        raise OSError(30, "Read-only file system")

    monkeypatch.setattr(Path, "unlink", refuse)
    with pytest.raises(WriterFailed), atomic_path(tmp_path / "x.txt") as tmp:
        tmp.write_text("x")
        raise WriterFailed


def test_write_if_changed_leaves_a_file_with_the_same_text_alone(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "plan.json"
    assert atomic_write_text_if_changed(path, "{}") is True and path.read_text() == "{}"
    inode, mtime = path.stat().st_ino, path.stat().st_mtime_ns
    assert atomic_write_text_if_changed(path, "{}") is False
    assert (path.stat().st_ino, path.stat().st_mtime_ns) == (inode, mtime)  # not replaced
    assert atomic_write_text_if_changed(path, '{"a": 1}') is True and path.read_text() == '{"a": 1}'
