"""The labelling state machine: what an output folder can hold at any instant, and how a run moves on.

One run of ``label_dataset`` into folder ``OUT`` goes through these states; a kill (SIGKILL, power loss)
can stop it anywhere, and running the same command again always ends in the same finished dataset:

1. **locked**: ``OUT/.labeling/lock`` is held (``flock``) by the run; a second run into ``OUT`` stops
   with `DatasetBusyError` naming the holder's pid. The kernel drops the lock when its owner dies, so a
   killed run's lock is taken over by the next run without a stale-lock check.
2. **fresh or resumed**: an empty ``OUT``, or one holding only the state folder with temporary files
   (a run killed during its very first write), starts over; one with ``.labeling/settings.json``
   resumes if the settings match. Temporary files of a dead run (``.<name>.<12 hex>.tmp<suffix>``,
   see `grounded_sam.atomic`) are deleted; only the lock holder may do that.
3. **settings written**, then **plan written** (``plan.json``: every image of this run).
4. **per image**, in order: the image placed (hard link or copy), its label files written, its line
   appended to ``manifest.jsonl``, and last its record ``records/<image>.json``. Each file is written
   to a temporary name and renamed, so every file is whole or absent. Only the record marks the
   image done: an image killed before its record is labelled again, and its files are replaced.
5. **finished**: the dataset files (COCO json, data.yaml, classes.json), the compacted
   ``manifest.jsonl`` and ``summary.json`` are rewritten from the records, then ``assembled.json``
   marks them up to date (`mark_assembled`); the lock file is removed. A run that is about to change
   records or outputs first removes that mark, so a kill leaves it absent. A run with nothing to do (no
   image to label or to forget, the mark there with the same settings, every dataset file present)
   writes nothing at all.

Ctrl-C or SIGTERM (the CLI turns SIGTERM into Ctrl-C) lets the images in flight finish their files or
drop them (temporary files are removed), then the run stops; the lock is released. A folder that
cannot be written (read-only folder or mount, no permission, disk or inode table full, quota) stops
the run with one `OutputFolderError` naming the folder and the cause; what was written stays
consistent and the same command resumes once the cause is fixed.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import logging
import os
import re
import socket
from collections.abc import Iterator, Sequence
from pathlib import Path

from grounded_sam.atomic import atomic_write_text_if_changed

logger = logging.getLogger(__name__)

STATE_DIR = ".labeling"
LOCK_FILE = "lock"
ASSEMBLED_FILE = "assembled.json"
# Temporary files of grounded_sam.atomic: ".<stem>.<12 hex>.tmp<suffix>" (left behind by a kill -9).
ATOMIC_TEMP = re.compile(r"^\..+\.[0-9a-f]{12}\.tmp(\.[^.]+)?$")

_CAUSES = {
    errno.ENOSPC: "the disk is full (no free space or no free inodes)",
    errno.EDQUOT: "the disk quota is exceeded",
    errno.EROFS: "the file system is read-only",
    errno.EACCES: "permission denied",
    errno.EPERM: "the operation is not permitted",
    errno.EFBIG: "the file is too large for the file system",
}


class DatasetBusyError(RuntimeError):
    """Another live run is writing into the same output folder."""


class OutputFolderError(OSError):
    """The output folder cannot be written (read-only, no permission, disk full); the run stopped."""


def is_output_fault(error: BaseException) -> bool:
    """Whether `error` means the output folder cannot take writes at all (not one bad image)."""
    return isinstance(error, OSError) and error.errno in _CAUSES


def output_fault(out: Path, error: OSError) -> OutputFolderError:
    """One clear error for a write that failed because of the folder, naming it and the cause."""
    cause = _CAUSES.get(error.errno or 0, error.strerror or str(error))
    where = f" (writing {error.filename})" if error.filename else ""
    fault = OutputFolderError(
        error.errno,
        f"cannot write to {out}: {cause}{where}. Nothing half-written was kept; fix this (free space, "
        "make the folder writable, or choose another output folder) and run the same command again "
        "(a dataset resumes where it stopped).",
    )
    return fault


@contextlib.contextmanager
def translated_faults(out: Path) -> Iterator[None]:
    """Re-raise folder-level `OSError`s inside the block as `OutputFolderError`."""
    try:
        yield
    except OutputFolderError:
        raise
    except OSError as error:
        if is_output_fault(error):
            raise output_fault(out, error) from error
        raise


@contextlib.contextmanager
def dataset_lock(out: Path) -> Iterator[None]:
    """Hold ``OUT/.labeling/lock`` for the block (see the module docstring); raises `DatasetBusyError`
    when a live run holds it. The lock file (and a state folder it leaves empty) is removed at exit."""
    state = out / STATE_DIR
    created = (not out.exists(), not state.exists())
    with translated_faults(out):
        state.mkdir(parents=True, exist_ok=True)
        fd = _acquire(state / LOCK_FILE, out)
    try:
        yield
    finally:
        with contextlib.suppress(OSError):  # a read-only folder: the kernel still drops the lock
            (state / LOCK_FILE).unlink()
            if created[1] and not any(state.iterdir()):
                state.rmdir()
                if created[0] and not any(out.iterdir()):
                    out.rmdir()
        os.close(fd)


def _acquire(path: Path, out: Path) -> int:
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = os.pread(fd, 200, 0).decode("utf-8", "replace").strip() or "unknown"
            os.close(fd)
            raise DatasetBusyError(
                f"{out} is being written by another grounded-sam label run ({owner}); wait for it to "
                "finish (or stop it), then run this command again, or choose another --out."
            ) from None
        # The previous holder may have removed the file between our open and our lock: start again.
        if os.path.exists(path) and os.fstat(fd).st_ino == os.stat(path).st_ino:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()}".encode(), 0)
            return fd
        os.close(fd)


def only_unfinished_start(out: Path) -> bool:
    """Whether `out` holds nothing but what a first run killed before writing its settings leaves: the
    state folder with temporary files, empty folders or the lock in it."""
    if any(entry.name != STATE_DIR for entry in out.iterdir()):
        return False
    for _, _, filenames in os.walk(out / STATE_DIR):
        if any(name != LOCK_FILE and not ATOMIC_TEMP.match(name) for name in filenames):
            return False
    return True


def remove_atomic_temps(root: Path) -> int:
    """Delete temporary files of interrupted atomic writes under `root`; return how many."""
    count = 0
    for folder, _, filenames in os.walk(root):
        for name in filenames:
            if ATOMIC_TEMP.match(name):
                Path(folder, name).unlink(missing_ok=True)
                count += 1
    if count:
        logger.info("removed %d temporary files left by an interrupted run in %s", count, root)
    return count


def assembled_files(out: Path, fingerprint: str) -> list[Path] | None:
    """The dataset files of `out` (a dataset folder) when a finished run with the settings `fingerprint`
    assembled them from the current records and every one is still there; else None (assemble again)."""
    try:
        data = json.loads((out / STATE_DIR / ASSEMBLED_FILE).read_text(encoding="utf-8"))
        files = [out / rel for rel in data["files"]]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if data.get("fingerprint") != fingerprint or not all(f.is_file() for f in files):
        return None
    return files


def mark_assembled(out: Path, fingerprint: str, files: Sequence[Path]) -> None:
    """Record that the dataset files of `out` are up to date with its records (state 5)."""
    rels = [Path(f).relative_to(out).as_posix() for f in files]
    data = json.dumps({"fingerprint": fingerprint, "files": rels})
    atomic_write_text_if_changed(out / STATE_DIR / ASSEMBLED_FILE, data)


def clear_assembled(out: Path) -> None:
    """Forget `mark_assembled`: the first write of a run that changes records or outputs."""
    (out / STATE_DIR / ASSEMBLED_FILE).unlink(missing_ok=True)
