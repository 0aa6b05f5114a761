"""The candidate manifest: ``<out>/manifest.jsonl``, one JSON line per labelled image with every candidate
the detector found and what the quality rules made of it (kept, or dropped by which rule).

A line is ``{"rel": ..., "split": ..., "height": H, "width": W, "candidates": [...]}`` with each candidate
as `Candidate.to_dict` writes it (phrase, class, score, mask_score, area, box XYXY, kept, rule, and
``against`` / ``iou`` for overlap rules). Lines are appended atomically: one ``write`` of the whole line
on a file opened with ``O_APPEND``, under an exclusive ``flock``, so concurrent workers never interleave
and a crash leaves at most a truncated last line (skipped by the reader). An image labelled again (after
an interrupted run) gets a new line; the last line of an image wins. At the end of a run the file is
rewritten (`compact_manifest`) with one line per labelled image in the sorted image order, so that a
resumed or distributed run gives the same file as an uninterrupted one.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from grounded_sam.atomic import atomic_write_text
from grounded_sam.labeling.rules import Candidate

logger = logging.getLogger(__name__)

MANIFEST_FILE = "manifest.jsonl"


def manifest_line(
    rel: str, split: str, image_size: tuple[int, int], candidates: Sequence[Candidate]
) -> dict[str, Any]:
    """The JSON-ready manifest line of one image."""
    return {
        "rel": rel,
        "split": split,
        "height": int(image_size[0]),
        "width": int(image_size[1]),
        "candidates": [c.to_dict() for c in candidates],
    }


def append_line(path: Path, line: Mapping[str, Any]) -> None:
    """Append `line` as one JSON line to `path` (created if needed), atomically with respect to other
    writers of the same file."""
    data = (json.dumps(line, separators=(",", ":")) + "\n").encode("utf-8")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        _repair_tail(fd)
        written = os.write(fd, data)
        if written != len(data):  # a full disk; the reader skips the partial line
            raise OSError(f"could not append to {path}: wrote {written} of {len(data)} bytes")
    finally:
        os.close(fd)  # also releases the lock


def iter_lines(path: Path) -> Iterator[dict[str, Any]]:
    """Every readable line of a manifest, in file order (a truncated or corrupt line is skipped)."""
    if not path.is_file():
        return
    with open(path, encoding="utf-8") as f:
        for number, text in enumerate(f, start=1):
            try:
                line = json.loads(text)
            except json.JSONDecodeError:
                logger.warning("skipping unreadable line %d of %s", number, path)
                continue
            if isinstance(line, dict) and "rel" in line:
                yield line


def read_manifest(path: Path) -> dict[str, dict[str, Any]]:
    """The last line of each image, by relative image path."""
    return {line["rel"]: line for line in iter_lines(path)}


def compact_manifest(path: Path, rels: Sequence[str]) -> None:
    """Rewrite the manifest atomically with the last line of each of `rels`, in that order."""
    if not path.is_file():
        return
    lines = read_manifest(path)
    text = "".join(json.dumps(lines[rel], separators=(",", ":")) + "\n" for rel in rels if rel in lines)
    atomic_write_text(path, text)


def _repair_tail(fd: int) -> None:
    """Start a new line if the file ends mid-line (a writer killed during its write)."""
    size = os.fstat(fd).st_size
    if size and os.pread(fd, 1, size - 1) != b"\n":
        os.write(fd, b"\n")
