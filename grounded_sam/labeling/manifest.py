"""What a labelling run is (settings + fingerprint), which images it covers, and what is already done.

State lives in ``<out>/.labeling/``:

* ``settings.json``: the settings and their fingerprint; a later run with other settings is refused.
* ``plan.json``: the image paths (relative, POSIX) of the current run and their dataset stems, so that
  ``overwrite`` and later runs find the files of images interrupted before their record was written, or
  since removed, and give every image the name it had before (``{rel: stem}``; a plain list of paths,
  written by older versions, means every stem is the path's own `safe_stem`).
* ``records/<relative image path>.json``: one small file per image, written atomically after all of
  the image's outputs. Its presence with ``"status": "done"`` is what makes a resumed run skip it.
  It holds the original path (``rel``) and the image's dataset stem (``stem``; missing in records of
  older versions: the path's `safe_stem`).

Every image gets a dataset stem no other image has (`grounded_sam.naming.claim_stems`): ``x.png``
beside ``x.jpg`` gives ``x`` and ``x~<8 hex>``, and a resumed run keeps the stems already given.

Split assignment hashes the relative image path, so it does not depend on the order, the number of
other images or the machine: resumed, re-run and distributed runs agree.
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import json
import logging
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Literal, get_args

from grounded_sam.atomic import atomic_write_text, atomic_write_text_if_changed
from grounded_sam.labeling.ontology import Ontology
from grounded_sam.labeling.rules import QualityRules
from grounded_sam.labeling.state import ATOMIC_TEMP, STATE_DIR
from grounded_sam.naming import safe_relative, safe_stem

logger = logging.getLogger(__name__)

DatasetFormat = Literal["coco", "yolo", "masks", "label-studio", "cvat"]
DATASET_FORMATS: tuple[str, ...] = get_args(DatasetFormat)
Segmentation = Literal["rle", "polygon"]
SETTINGS_VERSION = 1
_DEFAULT_SPLIT_NAMES = {1: ("train",), 2: ("train", "val"), 3: ("train", "val", "test")}


class SettingsMismatchError(ValueError):
    """The output folder holds a dataset made with other settings."""


@dataclass(frozen=True)
class LabelingSettings:
    """Everything that decides the content of the dataset; its fingerprint guards resumed runs.

    Attributes:
        ontology: prompts and their classes.
        format: ``coco`` (instances json per split), ``yolo`` (Ultralytics segmentation), ``masks``,
            ``label-studio`` (tasks with predictions) or ``cvat`` (CVAT for images 1.1 XML).
        splits: (name, fraction) pairs, fractions summing to 1.
        box_threshold, text_threshold: detector thresholds (None: the detector's own).
        model: a name for the models used (part of the fingerprint only).
        segmentation: COCO segmentation encoding, ``rle`` or ``polygon`` (Label Studio: brush RLE or
            polygons).
        rules: the quality rules that decide which candidates become labels (negative phrases, agnostic
            NMS, area bounds, max per image; `labeling.rules`). Default: only duplicate labels from two
            prompts of one class are dropped.
        tiles: (tile size, overlap) for tiled prediction of large images (`grounded_sam.tiles`), or None.
    """

    ontology: Ontology
    format: DatasetFormat = "coco"
    splits: tuple[tuple[str, float], ...] = (("train", 1.0),)
    box_threshold: float | None = None
    text_threshold: float | None = None
    model: str = "custom"
    segmentation: Segmentation = "rle"
    rules: QualityRules = field(default_factory=QualityRules)
    tiles: tuple[int, float] | None = None

    def __post_init__(self) -> None:
        self.rules.check(self.ontology)
        if self.format not in DATASET_FORMATS:
            raise ValueError(f"unknown dataset format {self.format!r}; choose one of {DATASET_FORMATS}")
        if self.segmentation not in get_args(Segmentation):
            raise ValueError(f"segmentation must be 'rle' or 'polygon'; got {self.segmentation!r}")
        object.__setattr__(self, "splits", parse_splits(self.splits))
        for name in ("box_threshold", "text_threshold"):
            value = getattr(self, name)
            if value is not None and not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must lie in [0, 1]; got {value}")

    @property
    def split_names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.splits)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready settings (the fingerprint is the sha256 of this, canonically serialised)."""
        return {
            "version": SETTINGS_VERSION,
            "ontology": self.ontology.to_dict(),
            "format": self.format,
            "splits": [[name, fraction] for name, fraction in self.splits],
            "box_threshold": self.box_threshold,
            "text_threshold": self.text_threshold,
            "model": self.model,
            "segmentation": self.segmentation,
            **({"rules": self.rules.to_dict()} if self.rules.to_dict() else {}),
            **({"tiles": list(self.tiles)} if self.tiles is not None else {}),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LabelingSettings:
        return cls(
            ontology=Ontology.from_dict(data["ontology"]),
            format=data["format"],
            splits=tuple((str(name), float(fraction)) for name, fraction in data["splits"]),
            box_threshold=data["box_threshold"],
            text_threshold=data["text_threshold"],
            model=data["model"],
            segmentation=data["segmentation"],
            rules=QualityRules.from_dict(data.get("rules", {})),
            tiles=(int(data["tiles"][0]), float(data["tiles"][1])) if data.get("tiles") else None,
        )

    @property
    def fingerprint(self) -> str:
        canonical = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def parse_splits(spec: str | Sequence[float] | Sequence[tuple[str, float]]) -> tuple[tuple[str, float], ...]:
    """``"0.8,0.2"`` → (("train", 0.8), ("val", 0.2)); also ``"train=0.7,val=0.2,test=0.1"``, a list of
    fractions (1 to 3 of them: train, val, test) or (name, fraction) pairs. Fractions must sum to 1."""
    items: list[Any] = (
        [p.strip() for p in spec.split(",") if p.strip()] if isinstance(spec, str) else list(spec)
    )
    pairs: list[tuple[str, float]] = []
    try:
        for item in items:
            if isinstance(item, str) and "=" in item:
                name, value = item.split("=", 1)
                pairs.append((name.strip(), float(value)))
            elif isinstance(item, (tuple, list)):
                pairs.append((str(item[0]), float(item[1])))
            else:
                pairs.append(("", float(item)))
    except (TypeError, ValueError, IndexError) as e:
        raise ValueError(f"cannot read the split {spec!r}: use fractions like '0.8,0.2' ({e})") from e
    if any(not name for name, _ in pairs):
        if any(name for name, _ in pairs) or len(pairs) not in _DEFAULT_SPLIT_NAMES:
            raise ValueError(
                f"give 1 to 3 unnamed fractions (train, val, test) or name all of them; got {spec!r}"
            )
        pairs = list(zip(_DEFAULT_SPLIT_NAMES[len(pairs)], (f for _, f in pairs), strict=True))
    names = [name for name, _ in pairs]
    if len(set(names)) != len(names) or any(not re.fullmatch(r"[A-Za-z0-9_-]+", n) for n in names):
        raise ValueError(f"split names must be distinct words (letters, digits, _ or -); got {names}")
    if any(f < 0 for _, f in pairs) or abs(sum(f for _, f in pairs) - 1.0) > 1e-6:
        raise ValueError(f"split fractions must be >= 0 and sum to 1; got {spec!r}")
    return tuple(pairs)


def split_of(rel: str, splits: Sequence[tuple[str, float]]) -> str:
    """The split of the image at relative path `rel`: a hash of the path, uniform in [0, 1), is placed
    on the cumulative fractions. Independent of the other images, the order and the process."""
    digest = hashlib.sha256(rel.encode("utf-8", "surrogateescape")).digest()  # names need not be UTF-8
    u = int.from_bytes(digest[:8], "big") / 2**64
    cumulative = 0.0
    for name, fraction in splits:
        cumulative += fraction
        if u < cumulative:
            return name
    return next(name for name, fraction in reversed(splits) if fraction > 0)


def check_relative(rel: str) -> str:
    """`rel` if it is a safe relative POSIX path (not absolute, no ``..``, no backslash); else ValueError."""
    path = PurePosixPath(rel)
    if not rel or path.is_absolute() or "\\" in rel or any(part in ("..", ".") for part in rel.split("/")):
        raise ValueError(
            f"refusing the path {rel!r}: output names must be relative and must not contain '..'"
        )
    return rel


def inside(root: Path, rel: str) -> Path:
    """``root / rel`` after checking that it stays under `root`, also through symlinked folders."""
    path = root / check_relative(rel)
    real_root = root.resolve()
    if not path.parent.resolve().is_relative_to(real_root):
        raise ValueError(
            f"refusing to write {path}: a symbolic link leads it outside the output folder {root}"
        )
    return path


@dataclass(frozen=True)
class ImageTask:
    """One image to label: POSIX path relative to the image folder, absolute source path, split, the
    1-based COCO image id (its position in the sorted list of all images found) and the dataset stem
    of its outputs (default: `safe_stem` of `rel`; see `grounded_sam.naming.claim_stems`)."""

    rel: str
    source: str
    split: str
    image_id: int
    stem: str = ""

    def __post_init__(self) -> None:
        if not self.stem:
            object.__setattr__(self, "stem", safe_stem(self.rel))


class Manifest:
    """The state folder of one output dataset: settings, plan and per-image records."""

    def __init__(self, out_dir: Path) -> None:
        self.root = out_dir
        self.state = out_dir / STATE_DIR
        self.records_dir = self.state / "records"

    @property
    def settings_path(self) -> Path:
        return self.state / "settings.json"

    def exists(self) -> bool:
        return self.settings_path.is_file()

    def read_settings(self) -> dict[str, Any]:
        try:
            return json.loads(self.settings_path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as e:
            raise ValueError(
                f"cannot read {self.settings_path} ({e}); delete the output folder to start over"
            ) from e

    def stored_settings(self) -> LabelingSettings:
        try:
            return LabelingSettings.from_dict(self.read_settings()["settings"])
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(
                f"{self.settings_path} was written by another version of this tool ({e}); delete the output "
                "folder to start over"
            ) from e

    def write_settings(self, settings: LabelingSettings) -> None:
        """Store `settings` (a resumed run leaves the file as it is)."""
        data = {"fingerprint": settings.fingerprint, "settings": settings.to_dict()}
        atomic_write_text_if_changed(self.settings_path, json.dumps(data, indent=1, sort_keys=True))

    def check_settings(self, settings: LabelingSettings) -> None:
        """Raise `SettingsMismatchError`, naming what changed, unless the stored settings equal `settings`."""
        stored = self.read_settings()
        if stored.get("fingerprint") == settings.fingerprint:
            return
        old, new = stored.get("settings", {}), settings.to_dict()
        changed = sorted(key for key in set(old) | set(new) if old.get(key) != new.get(key))
        details = "; ".join(f"{key}: {old.get(key)!r} -> {new.get(key)!r}" for key in changed)
        raise SettingsMismatchError(
            f"{self.root} holds a dataset made with other settings ({details}). Run with the same settings "
            "to resume, pass --overwrite (overwrite=True) to replace it, or choose another output folder."
        )

    def planned(self) -> dict[str, str]:
        """The images of the last run and their dataset stems (rel -> stem)."""
        path = self.state / "plan.json"
        plan = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
        if isinstance(plan, list):  # written by an older version: every stem is the path's own
            return {rel: safe_stem(rel) for rel in plan}
        return {str(rel): str(stem) for rel, stem in plan.items()}

    def write_plan(self, stems: Mapping[str, str]) -> None:
        """Store the images of this run and their stems (left as it is when the plan is the same)."""
        atomic_write_text_if_changed(self.state / "plan.json", json.dumps(dict(stems), sort_keys=True))

    def known_stems(self, records: Mapping[str, Mapping[str, Any]]) -> dict[str, str]:
        """The dataset stem of every image this folder has named already: the plan's, then the records'."""
        stems = self.planned()
        for rel, record in records.items():
            stems[rel] = str(record.get("stem") or safe_stem(rel))
        return stems

    def record_path(self, rel: str) -> Path:
        return inside(self.records_dir, f"{safe_relative(check_relative(rel))}.json")

    def write_record(self, record: Mapping[str, Any]) -> None:
        atomic_write_text(self.record_path(record["rel"]), json.dumps(record, separators=(",", ":")))

    def read_record(self, rel: str) -> dict[str, Any] | None:
        """The record of one image, or None when it has none (or an unreadable one)."""
        try:
            return json.loads(self.record_path(rel).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None

    def read_records(self) -> dict[str, dict[str, Any]]:
        """Every readable record, by relative image path."""
        records: dict[str, dict[str, Any]] = {}
        if not self.records_dir.is_dir():
            return records
        with _collector_paused():
            for folder, _, filenames in os.walk(self.records_dir):
                for name in filenames:
                    if not name.endswith(".json") or ATOMIC_TEMP.match(name):
                        continue
                    path = os.path.join(folder, name)  # str paths: 10,000 records are read at each start
                    try:
                        with open(path, encoding="utf-8") as file:
                            record = json.load(file)
                        records[record["rel"]] = record
                    except (OSError, ValueError, KeyError, TypeError) as e:
                        logger.warning(
                            "ignoring unreadable record %s (%s); its image will be labelled again", path, e
                        )
        return records

    def remove_record(self, rel: str) -> None:
        self.record_path(rel).unlink(missing_ok=True)


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    """Pause Python's cyclic garbage collector while the records are parsed: the JSON objects hold no
    cycles, but the hundreds of thousands of them trigger full collections of a heap that holds torch,
    which cost several times the reading (1.5 s of 1.7 s per 1,000 records measured)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
