"""`save_result`: a `Result` written to files in one of the formats (see `grounded_sam.export`).

Writers only read a `Result` (the type is imported for annotations alone), so `Result`'s own methods can
call them without an import cycle; `export.load` reads the ``json`` format back.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, get_args

from grounded_sam.atomic import atomic_path, atomic_write_text

if TYPE_CHECKING:
    from grounded_sam.io import ImageInput
    from grounded_sam.result import Result

ExportFormat = Literal["coco", "yolo", "png", "json", "overlay"]
EXPORT_FORMATS: tuple[str, ...] = get_args(ExportFormat)
JSON_FORMAT_VERSION = 1


def save_result(
    result: Result,
    out_dir: str | os.PathLike[str],
    format: ExportFormat = "json",
    *,
    stem: str = "result",
    image: ImageInput | None = None,
    class_ids: Mapping[str, int] | None = None,
    file_name: str | None = None,
) -> list[Path]:
    """Write `result` to `out_dir` (created if needed) in `format`; return the paths written.

    ``overlay`` draws on `image`, by default the image at ``result.source``. The COCO ``file_name`` is
    `file_name` (the image's path relative to its dataset), else the name of `image` or of
    ``result.source``, else `stem`. `class_ids` maps label -> class id for coco/png (ids >= 1) and yolo
    (ids from 0); by default the labels of `result` are numbered in sorted order (pass the ids of the
    prompt's phrases to keep them the same across images). See the module docstring for the file names.

    Example::

        save_result(result, "out", "coco", stem="img_0001", image="img_0001.jpg")
    """
    out = Path(out_dir)
    if format == "json":
        return [atomic_write_text(out / f"{stem}.json", json.dumps(result_to_dict(result)))]
    if format == "coco":
        from grounded_sam.export.coco import coco_dataset

        name = file_name or _image_name(image if isinstance(image, str | os.PathLike) else result.source)
        dataset = coco_dataset([(name or stem, result)], class_ids)
        return [atomic_write_text(out / f"{stem}.coco.json", json.dumps(dataset))]
    if format == "yolo":
        from grounded_sam.export.class_ids import class_id_map
        from grounded_sam.export.yolo import result_to_yolo_lines

        lines = result_to_yolo_lines(result, class_ids)
        paths = [atomic_write_text(out / f"{stem}.txt", "".join(line + "\n" for line in lines))]
        if class_ids is None:
            names = "".join(name + "\n" for name in class_id_map(result.labels))
            paths.append(atomic_write_text(out / f"{stem}.classes.txt", names))
        return paths
    if format == "png":
        from grounded_sam.export.png import save_png_masks

        return save_png_masks(result, out, stem=stem, class_ids=class_ids)
    if format == "overlay":
        if image is None and result.source is None:
            raise ValueError(
                "format='overlay' needs the image the result was computed on: pass image= (this result "
                "was computed from pixels, not a file, so it does not know its image)"
            )
        from grounded_sam.annotate import overlay

        drawn = overlay(result.source if image is None else image, result)
        with atomic_path(out / f"{stem}_overlay.png") as tmp:
            drawn.save(tmp, format="PNG")
        return [out / f"{stem}_overlay.png"]
    raise ValueError(f"unknown export format {format!r}; choose one of {', '.join(EXPORT_FORMATS)}")


def _image_name(path: str | os.PathLike[str] | None) -> str | None:
    return None if path is None else Path(path).name


def result_to_dict(result: Result) -> dict[str, Any]:
    """A JSON-ready dict holding everything in `result` (masks as compressed COCO RLE)."""
    instances = [
        {
            "label": inst.label,
            "score": inst.score,
            "mask_score": inst.mask_score,
            "box": [float(v) for v in inst.box],
            "area": int(area),
            "mask": rle,
        }
        for inst, area, rle in zip(result, result.areas, result.rles(), strict=True)
    ]
    data = {"version": JSON_FORMAT_VERSION, "image_size": list(result.image_size), "instances": instances}
    return data if result.source is None else {**data, "source": result.source}
