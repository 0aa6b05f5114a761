"""Dataset layout and writers: the files of one image (written by any worker) and the dataset-level files
assembled from the per-image records at the end of a run.

Layout under the output folder (``<split>`` is e.g. ``train``; ``<rel>`` the image's path relative to
the image folder, nested folders kept, each part made safe; ``<stem>`` that path without its suffix. An
image whose stem another image already has, as ``x.jpg`` beside ``x.png``, gets ``<stem>~<8 hex>`` as
its stem and ``<stem>~<8 hex>.<suffix>`` as its copy; see `grounded_sam.naming.claim_stems`)::

    images/<split>/<rel>                     every format: the image, hard-linked (copied across devices)
    annotations/instances_<split>.json       coco: one COCO instances file per split
    labels/<split>/<stem>.txt                yolo: Ultralytics segmentation lines "cls x1 y1 x2 y2 ..."
    data.yaml                                yolo: splits and class names
    masks/<split>/<stem>.png                 masks: class map, 0 background, class id + 1 elsewhere
    masks/<split>/<stem>.instances.png       masks: instance map, 0 background, instance id (1..N)
    masks/<split>/<stem>.json                masks: instances (id, class, mask box XYXY, scores, RLE)
    classes.json                             masks: class ids and names
    tasks.json, label_config.xml             label-studio: tasks with predictions (brush RLE or polygons)
                                             and the labelling interface; image URLs are
                                             /data/local-files/?d=images/<split>/<rel> (set Label Studio's
                                             LOCAL_FILES_DOCUMENT_ROOT to the dataset folder)
    annotations.xml                          cvat: CVAT for images 1.1, a box and a mask per instance,
                                             image names <split>/<rel> under images/
    summary.json                             every format: counts, failed and skipped files, drops
    manifest.jsonl                           every format: one line per image, every candidate and the
                                             quality rule that kept or dropped it (labeling.candidates)
    contact_sheet.png                        on request: overlays of a sample of images
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from grounded_sam.atomic import atomic_path, atomic_write_bytes, atomic_write_text
from grounded_sam.export.coco import result_to_coco_annotations
from grounded_sam.export.cvat import cvat_xml, result_to_cvat_shapes
from grounded_sam.export.label_studio import label_config, label_studio_task, result_to_label_studio
from grounded_sam.export.png import index_png_bytes, label_index_map
from grounded_sam.export.yolo import result_to_yolo_lines
from grounded_sam.labeling.manifest import ImageTask, LabelingSettings, inside, split_of
from grounded_sam.labeling.state import LOCK_FILE, STATE_DIR, remove_atomic_temps
from grounded_sam.naming import copy_name, safe_stem
from grounded_sam.result import Result

logger = logging.getLogger(__name__)

_OWNED_FOLDERS = ("images", "labels", "masks", "annotations")


@dataclass(frozen=True)
class DatasetLayout:
    """Where every file of a dataset goes; picklable, so workers on other processes can use it."""

    root: Path
    settings: LabelingSettings

    def image_file(self, rel: str, split: str, stem: str | None = None) -> str:
        """The dataset copy of the image at `rel` with dataset stem `stem` (default: its `safe_stem`): the
        same path, made safe (`grounded_sam.naming.copy_name`)."""
        return f"images/{split}/{copy_name(rel, stem or safe_stem(rel))}"

    def stem(self, rel: str, split: str, folder: str, stem: str | None = None) -> str:
        return f"{folder}/{split}/{stem or safe_stem(rel)}"

    def outputs(self, rel: str, split: str, stem: str | None = None) -> list[str]:
        """Relative paths of every file written for one image in this format."""
        files = [self.image_file(rel, split, stem)]
        if self.settings.format == "yolo":
            files.append(self.stem(rel, split, "labels", stem) + ".txt")
        elif self.settings.format == "masks":
            stem = self.stem(rel, split, "masks", stem)
            files += [f"{stem}.png", f"{stem}.instances.png", f"{stem}.json"]
        return files

    def dataset_files(self) -> list[str]:
        """Relative paths of the dataset-level files (assembled at the end of a run)."""
        files = {"coco": [f"annotations/instances_{s}.json" for s in self.settings.split_names]}
        files["yolo"], files["masks"] = ["data.yaml"], ["classes.json"]
        files["label-studio"], files["cvat"] = ["tasks.json", "label_config.xml"], ["annotations.xml"]
        common = ["summary.json", "contact_sheet.png", "manifest.jsonl", "review.jsonl"]
        return [*files[self.settings.format], *common]

    def path(self, rel: str) -> Path:
        """Absolute path of an output, checked to stay inside the output folder."""
        return inside(self.root, rel)


def class_result(result: Result, settings: LabelingSettings) -> tuple[Result, list[str]]:
    """`result` relabelled from prompts to class names (instances of unknown phrases dropped, logged),
    and the prompt of each kept instance."""
    classes = [settings.ontology.class_of(label) for label in result.labels]
    keep = np.array([name is not None for name in classes], dtype=bool)
    if not keep.all():
        unknown = sorted({label for label, name in zip(result.labels, classes, strict=True) if name is None})
        logger.warning(
            "dropping %d instances whose phrases %s are not in the ontology", (~keep).sum(), unknown
        )
    kept = result[keep]
    names = [name for name in classes if name is not None]
    return kept.with_labels(names), kept.labels


def write_image_outputs(layout: DatasetLayout, task: ImageTask, result: Result) -> dict[str, Any]:
    """Write the files of one labelled image (atomically) and return its manifest record.

    `result` holds the pipeline's phrases as labels; they are mapped to classes here.
    """
    settings = layout.settings
    classed, prompts = class_result(result, settings)
    class_ids = {name: settings.ontology.class_id(name) for name in settings.ontology.class_names}
    instances = instance_records(classed, prompts, class_ids)
    _place_image(task.source, layout.path(layout.image_file(task.rel, task.split, task.stem)))
    record: dict[str, Any] = {
        "rel": task.rel,
        "stem": task.stem,
        "split": task.split,
        "status": "done",
        "height": classed.image_size[0],
        "width": classed.image_size[1],
        "instances": instances,
    }
    if settings.format == "coco":
        one_based = {name: cid + 1 for name, cid in class_ids.items()}
        anns = result_to_coco_annotations(
            classed, task.image_id, one_based, start_id=0, segmentation=settings.segmentation
        )
        record["coco"] = [{k: v for k, v in ann.items() if k not in ("id", "image_id")} for ann in anns]
    elif settings.format == "label-studio":
        masks = "brush" if settings.segmentation == "rle" else "polygon"
        record["label_studio"] = result_to_label_studio(classed, masks=masks)
    elif settings.format == "cvat":
        record["cvat"] = result_to_cvat_shapes(classed)
    elif settings.format == "yolo":
        lines = result_to_yolo_lines(classed, class_ids)
        text = "".join(line + "\n" for line in lines)
        atomic_write_text(layout.path(layout.stem(task.rel, task.split, "labels", task.stem) + ".txt"), text)
    else:
        _write_masks(layout, task, classed, instances, class_ids)
    return record


def instance_records(
    result: Result, prompts: Sequence[str], class_ids: Mapping[str, int]
) -> list[dict[str, Any]]:
    """JSON-ready instances: prompt, class, class_id (from 0), box (the mask's XYXY box, exclusive far
    edge), detector_box (XYXY), score, mask_score, area, mask RLE."""
    return [
        {
            "prompt": prompt,
            "class": inst.label,
            "class_id": class_ids[inst.label],
            "box": [float(v) for v in box],
            "detector_box": [float(v) for v in inst.box],
            "score": inst.score,
            "mask_score": inst.mask_score,
            "area": int(area),
            "mask": rle,
        }
        for inst, prompt, box, area, rle in zip(
            result, prompts, result.mask_boxes(), result.areas, result.rles(), strict=True
        )
    ]


def _write_masks(
    layout: DatasetLayout,
    task: ImageTask,
    classed: Result,
    instances: list[dict[str, Any]],
    class_ids: Mapping[str, int],
) -> None:
    stem = layout.stem(task.rel, task.split, "masks", task.stem)
    class_map = label_index_map(classed, {name: cid + 1 for name, cid in class_ids.items()})
    atomic_write_bytes(layout.path(f"{stem}.png"), index_png_bytes(class_map))
    atomic_write_bytes(layout.path(f"{stem}.instances.png"), index_png_bytes(classed.instance_map() + 1))
    meta = {
        "image": layout.image_file(task.rel, task.split, task.stem),
        "height": classed.image_size[0],
        "width": classed.image_size[1],
        "instances": [{"id": i, **inst} for i, inst in enumerate(instances, start=1)],
    }
    atomic_write_text(layout.path(f"{stem}.json"), json.dumps(meta, separators=(",", ":")))


def _place_image(source: str, target: Path) -> None:
    if target.exists() and os.path.samefile(source, target):  # placed by an interrupted run
        return
    with atomic_path(target) as tmp:
        try:
            os.link(source, tmp)
        except OSError:  # another device, or a file system without hard links
            shutil.copyfile(source, tmp)


def write_dataset_files(
    layout: DatasetLayout, tasks: Sequence[ImageTask], records: Mapping[str, Mapping[str, Any]]
) -> list[Path]:
    """Assemble the dataset-level files of the format from the records of the `tasks` that are done.

    COCO image ids are the tasks' ids (position in the sorted image list); annotation ids run from 1
    over the images in that order, across splits, so any run over the same images gives the same ids.
    """
    settings = layout.settings
    for split in settings.split_names:  # Ultralytics wants every listed split folder to exist
        layout.path(f"images/{split}").mkdir(parents=True, exist_ok=True)
        if settings.format == "yolo":
            layout.path(f"labels/{split}").mkdir(parents=True, exist_ok=True)
    names = settings.ontology.class_names
    if settings.format == "yolo":
        return [atomic_write_text(layout.path("data.yaml"), yolo_data_yaml(settings.split_names, names))]
    if settings.format in ("label-studio", "cvat"):
        return _write_tool_files(layout, tasks, records)
    if settings.format == "masks":
        classes = {
            "background": 0,
            "classes": [{"id": i, "name": n, "mask_value": i + 1} for i, n in enumerate(names)],
        }
        return [atomic_write_text(layout.path("classes.json"), json.dumps(classes, indent=1))]
    datasets = {split: _coco_skeleton(settings) for split in settings.split_names}
    next_id = 1
    for task in tasks:
        record = records.get(task.rel)
        if record is None or record.get("status") != "done":
            continue
        dataset = datasets[task.split]
        dataset["images"].append(
            {
                "id": task.image_id,
                "file_name": copy_name(task.rel, task.stem),  # the image's path under images/<split>/
                "height": record["height"],
                "width": record["width"],
            }
        )
        for ann in record["coco"]:
            dataset["annotations"].append({"id": next_id, "image_id": task.image_id, **ann})
            next_id += 1
    return [
        atomic_write_text(
            layout.path(f"annotations/instances_{split}.json"), json.dumps(data, separators=(",", ":"))
        )
        for split, data in datasets.items()
    ]


def _write_tool_files(
    layout: DatasetLayout, tasks: Sequence[ImageTask], records: Mapping[str, Mapping[str, Any]]
) -> list[Path]:
    """Label Studio's tasks.json + label_config.xml, or CVAT's annotations.xml, from the records."""
    settings = layout.settings
    done = [(t, records[t.rel]) for t in tasks if records.get(t.rel, {}).get("status") == "done"]
    names = settings.ontology.class_names
    if settings.format == "cvat":
        images = [
            (f"{t.split}/{copy_name(t.rel, t.stem)}", (r["height"], r["width"]), r["cvat"]) for t, r in done
        ]
        return [atomic_write_text(layout.path("annotations.xml"), cvat_xml(images, names))]
    items = [
        label_studio_task(
            f"/data/local-files/?d={layout.image_file(t.rel, t.split, t.stem)}",
            r["label_studio"],
            [inst["score"] for inst in r["instances"]],
            f"grounded_sam ({settings.model})",
        )
        for t, r in done
    ]
    masks = "brush" if settings.segmentation == "rle" else "polygon"
    return [
        atomic_write_text(layout.path("tasks.json"), json.dumps(items, separators=(",", ":"))),
        atomic_write_text(layout.path("label_config.xml"), label_config(names, masks)),
    ]


def _coco_skeleton(settings: LabelingSettings) -> dict[str, Any]:
    onto = settings.ontology
    info = {
        "description": "labelled by grounded_sam",
        "ontology": dict(zip(onto.prompts, onto.classes, strict=True)),
    }
    categories = [{"id": i + 1, "name": name} for i, name in enumerate(onto.class_names)]
    return {"info": info, "images": [], "annotations": [], "categories": categories}


def yolo_data_yaml(splits: Sequence[str], names: Sequence[str]) -> str:
    """An Ultralytics data.yaml; without a ``path`` key the dataset root is the file's own folder.

    ``train`` is the split named "train" (else the first), ``val`` the one named "val" (else the
    second, else train's) and ``test`` the one named "test" if any.
    """
    train = "train" if "train" in splits else splits[0]
    val = "val" if "val" in splits else (splits[1] if len(splits) > 1 else train)
    lines = ["# YOLO segmentation dataset written by grounded-sam label; the root is this file's folder.\n"]
    if val == train:
        lines.append("# A single split: val is the training set. Hold images out with --split 0.8,0.2.\n")
    lines += [f"train: images/{train}\n", f"val: images/{val}\n"]
    if "test" in splits:
        lines.append("test: images/test\n")
    lines.append(f"nc: {len(names)}\nnames:\n")
    # JSON strings are valid YAML double-quoted scalars, so any class name survives the round trip.
    lines += [f"  {i}: {json.dumps(name)}\n" for i, name in enumerate(names)]
    return "".join(lines)


def remove_image_outputs(
    layout: DatasetLayout, rel: str, split: str, stem: str | None = None, keep: Sequence[str] = ()
) -> None:
    """Delete the files written for one image (missing ones are fine), except those in `keep`."""
    for file in layout.outputs(rel, split, stem):
        if file not in keep:
            _unlink_inside(layout, file)


def clear_dataset(layout: DatasetLayout, stems: Mapping[str, str]) -> None:
    """Delete what this tool wrote for `layout`: the outputs of the images `stems` names (rel -> dataset
    stem), the dataset files, the state folder, temporary files, then the folders left empty. Anything
    else in the folder stays."""
    remove_atomic_temps(layout.root)
    for rel, stem in stems.items():
        remove_image_outputs(layout, rel, split_of(rel, layout.settings.splits), stem)
    for file in layout.dataset_files():
        _unlink_inside(layout, file)
    state = layout.root / STATE_DIR
    for entry in state.iterdir() if state.is_dir() else ():
        if entry.name != LOCK_FILE:  # held by this run
            shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
    for name in _OWNED_FOLDERS:
        _prune_empty(layout.root / name)


def _unlink_inside(layout: DatasetLayout, rel: str) -> None:
    try:
        layout.path(rel).unlink(missing_ok=True)
    except ValueError as e:
        logger.warning("not deleting: %s", e)


def _prune_empty(folder: Path) -> None:
    if not folder.is_dir() or folder.is_symlink():
        return
    for child in folder.iterdir():
        if child.is_dir() and not child.is_symlink():
            _prune_empty(child)
    if not any(folder.iterdir()):
        folder.rmdir()
