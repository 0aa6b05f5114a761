"""What the app offers to download, as bytes: masks as a PNG zip, a COCO json, the overlay PNG."""

from __future__ import annotations

import io
import json
import re
import zipfile

import numpy as np
from PIL import Image

from grounded_sam.export.class_ids import class_id_map
from grounded_sam.export.coco import coco_dataset
from grounded_sam.export.png import index_png_bytes, label_index_map, mask_png_bytes
from grounded_sam.result import Result


def png_bytes(image: np.ndarray | Image.Image) -> bytes:
    """An (H, W, 3) uint8 array or a PIL image encoded as PNG."""
    picture = image if isinstance(image, Image.Image) else Image.fromarray(np.asarray(image))
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return buffer.getvalue()


def overlay_png_bytes(image: np.ndarray, result: Result) -> bytes:
    """``result`` drawn on ``image`` (masks, boxes and labels) as PNG."""
    return png_bytes(result.overlay(image))


def coco_json_bytes(result: Result, file_name: str) -> bytes:
    """A one-image COCO instances dataset (RLE masks) that ``pycocotools.coco.COCO`` loads, as UTF-8 JSON."""
    return json.dumps(coco_dataset([(file_name, result)])).encode("utf-8")


def masks_zip_bytes(result: Result, stem: str = "masks") -> bytes:
    """A zip of ``{stem}_labels.png`` (class-index map, 0 = background), ``{stem}_labels.txt`` (legend)
    and ``{stem}_{i:03d}_{label}.png`` (one 0/255 mask per instance)."""
    ids = class_id_map(result.labels, start=1)
    index_map = label_index_map(result, ids)
    legend = "0 background\n" + "".join(f"{i} {name}\n" for name, i in ids.items())
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(f"{stem}_labels.png", index_png_bytes(index_map))
        archive.writestr(f"{stem}_labels.txt", legend)
        for i, instance in enumerate(result):
            archive.writestr(f"{stem}_{i:03d}_{_safe(instance.label)}.png", mask_png_bytes(instance.mask))
    return buffer.getvalue()


def download_stem(name: str) -> str:
    """A file-name-safe stem from an image name ("my photo.jpg" -> "my_photo")."""
    return _safe(re.sub(r"\.[A-Za-z0-9]+$", "", name), "image")


def _safe(text: str, fallback: str = "object") -> str:
    return re.sub(r"[^\w\-]+", "_", text).strip("_")[:40] or fallback
