"""Finding the images to label: a walk of the image folder into sorted `ImageTask`s, with the files
that are left out and why."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from grounded_sam.io import IMAGE_SUFFIXES
from grounded_sam.labeling.manifest import ImageTask, check_relative, split_of
from grounded_sam.naming import claim_stems

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SkippedFile:
    """A file of the image folder that is not labelled, and why."""

    path: str
    note: str


@dataclass(frozen=True)
class ScanResult:
    tasks: list[ImageTask] = field(default_factory=list)
    skipped: list[SkippedFile] = field(default_factory=list)


def scan_images(
    images_dir: Path,
    splits: Sequence[tuple[str, float]],
    exclude: Path | None = None,
    known: Mapping[str, str] | None = None,
) -> ScanResult:
    """Walk `images_dir` (nested folders, hidden names ignored, `exclude` left out) into sorted tasks.

    Non-images, symbolic links that leave the folder and linked folders are reported as skipped. Every
    image gets a distinct dataset stem, the one in `known` (rel -> stem, from an earlier run) if any.
    """
    root = images_dir.resolve()
    excluded = exclude.resolve() if exclude is not None else None
    images: list[str] = []
    skipped: list[SkippedFile] = []
    folders = [("", str(root))]  # (rel prefix, path); os.scandir's entries know links without a stat
    while folders:
        prefix, folder = folders.pop()
        try:
            entries = list(os.scandir(folder))
        except OSError as e:  # an unreadable subfolder is left out, as os.walk does, but said
            logger.warning("cannot list %s (%s); its images are left out", folder, e)
            continue
        for entry in entries:
            rel = prefix + entry.name
            if entry.name.startswith("."):
                continue
            if entry.is_dir():  # follows links: a linked folder is reported, not walked
                if Path(entry.path) == excluded:
                    continue
                if entry.is_symlink():
                    skipped.append(SkippedFile(rel, "symbolic link to a folder; not followed"))
                else:
                    folders.append((rel + "/", entry.path))
                continue
            note = _not_an_image(entry, root)
            if note is None:
                images.append(rel)
            else:
                skipped.append(SkippedFile(rel, note))
    stems = claim_stems([check_relative(rel) for rel in images], known)
    tasks = [
        ImageTask(rel, os.path.join(root, rel), split_of(rel, splits), image_id, stems[rel])
        for image_id, rel in enumerate(sorted(images), start=1)
    ]
    return ScanResult(tasks, sorted(skipped, key=lambda s: s.path))


def _not_an_image(entry: os.DirEntry[str], root: Path) -> str | None:
    """Why the file `entry` is not labelled, or None for an image to label."""
    dot = entry.name.rfind(".")
    suffix = entry.name[dot:] if 0 < dot < len(entry.name) - 1 else ""  # as Path.suffix
    if suffix.lower() not in IMAGE_SUFFIXES:
        return f"not an image (suffix {suffix or 'none'!r})"
    if entry.is_symlink() and not Path(entry.path).resolve().is_relative_to(root):
        return "symbolic link to a file outside the image folder; not followed"
    return None
