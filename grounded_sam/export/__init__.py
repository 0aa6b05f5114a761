"""Exporters: every function takes a `Result`; files are written atomically.

Formats of `save_result` (file names under `out_dir`, `stem` defaults to "result"):

* ``json``: ``{stem}.json``, the lossless native format (masks as COCO RLE); read it back with
  `load_result`.
* ``coco``: ``{stem}.coco.json``, a one-image COCO instances dataset (`export.coco`).
* ``yolo``: ``{stem}.txt`` with YOLO segmentation lines (`export.yolo`), plus ``{stem}.classes.txt``
  (one class name per line, line i = class i) when the class ids were derived from the labels.
* ``png``: ``{stem}_labels.png`` label-index map, ``{stem}_labels.txt`` legend and one mask PNG per
  instance (`export.png`).
* ``overlay``: ``{stem}_overlay.png``, the annotated image (needs `image`, or a result that knows its
  ``source`` path).
"""

from grounded_sam.export.load import load_result, result_from_dict
from grounded_sam.export.save import (
    EXPORT_FORMATS,
    JSON_FORMAT_VERSION,
    ExportFormat,
    result_to_dict,
    save_result,
)

__all__ = [
    "EXPORT_FORMATS",
    "JSON_FORMAT_VERSION",
    "ExportFormat",
    "load_result",
    "result_from_dict",
    "result_to_dict",
    "save_result",
]
