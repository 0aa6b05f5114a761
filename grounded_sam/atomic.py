"""Atomic file writes: write to a temporary file in the target's folder, fsync, then rename over it.

A reader (or a crash) therefore sees either the old file or the complete new one, never a partial
write; on failure the old file is left untouched and the temporary file is removed.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
from collections.abc import Iterator
from pathlib import Path

logger = logging.getLogger(__name__)

MAX_NAME_BYTES = 255  # the longest file name (one path component) of common file systems
_MAX_SUFFIX_BYTES = 16


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a not-yet-existing temporary path next to `path`; on success it is renamed over `path`.

    The caller creates and writes the temporary file. It keeps the suffix of `path` so that writers
    that choose a format from the extension (``PIL.Image.save``) behave as for `path`. Parent folders
    are created. If the block raises, the temporary file is removed and `path` is left as it was.

    Example::

        with atomic_path("out/overlay.png") as tmp:
            image.save(tmp)
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(temp_name(target.name))
    try:
        yield tmp
        if not tmp.exists():
            raise FileNotFoundError(f"the writer for {target} did not create the temporary file {tmp}")
        _fsync_file(tmp)
        os.replace(tmp, target)
        # POSIX rename() does nothing when both names already link the same file (a hard-linked copy
        # placed again): the temporary name would stay behind.
        tmp.unlink(missing_ok=True)
    except BaseException:
        try:
            tmp.unlink(missing_ok=True)
        except OSError as cleanup:  # e.g. a read-only file system: the first error is the one to report
            logger.debug("could not remove the temporary file %s: %s", tmp, cleanup)
        raise
    _fsync_dir(target.parent)


def temp_name(name: str) -> str:
    """The temporary sibling name for a file called `name`: ``.<stem>.<12 hex>.tmp<suffix>``.

    The stem is cut (at a character boundary) so that the temporary name fits in `MAX_NAME_BYTES`
    even when `name` itself is as long as a file name may be.
    """
    stem, dot, suffix = name.rpartition(".") if "." in name[1:] else (name, "", "")
    suffix = f"{dot}{suffix}"
    if len(os.fsencode(suffix)) > _MAX_SUFFIX_BYTES:
        stem, suffix = name, ""
    room = MAX_NAME_BYTES - len(os.fsencode(suffix)) - len("." + ".0123456789ab.tmp")
    encoded = os.fsencode(stem)[:room]
    # A UTF-8 sequence cut in the middle decodes to surrogate escapes at its end: drop them.
    while encoded and 0xDC80 <= ord(os.fsdecode(encoded)[-1]) <= 0xDCFF:
        encoded = encoded[:-1]
    return f".{os.fsdecode(encoded)}.{secrets.token_hex(6)}.tmp{suffix}"


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write `data` to `path` atomically (parent folders created); return the path."""
    with atomic_path(path) as tmp, open(tmp, "xb") as f:
        f.write(data)
    return Path(path)


def atomic_write_text(path: str | os.PathLike[str], text: str, encoding: str = "utf-8") -> Path:
    """Write `text` to `path` atomically with the given encoding (parent folders created); return the path."""
    return atomic_write_bytes(path, text.encode(encoding))


def atomic_write_text_if_changed(path: str | os.PathLike[str], text: str) -> bool:
    """`atomic_write_text` unless `path` already holds exactly `text` (UTF-8); True when it wrote."""
    try:
        if Path(path).read_bytes() == text.encode("utf-8"):
            return False
    except OSError:
        pass
    atomic_write_text(path, text)
    return True


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(folder: Path) -> None:
    # Makes the rename itself durable on POSIX; directories cannot be opened this way on Windows.
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError as e:
        logger.debug("fsync of folder %s failed: %s", folder, e)
    finally:
        os.close(fd)
