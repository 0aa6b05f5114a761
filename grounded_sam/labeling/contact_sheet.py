"""Contact sheets: a grid of overlay thumbnails so that a person can check a dataset's labels at a glance."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from grounded_sam.annotate import default_font, overlay
from grounded_sam.atomic import atomic_path
from grounded_sam.export.load import result_from_instances
from grounded_sam.io import ImageInput, load_image
from grounded_sam.labeling.manifest import ImageTask
from grounded_sam.labeling.writers import DatasetLayout
from grounded_sam.result import Result

BACKGROUND = (32, 32, 32)
MAX_COLUMNS = 8


def contact_sheet(
    items: Sequence[tuple[str, ImageInput, Result]], *, thumb_size: int = 192, columns: int | None = None
) -> Image.Image:
    """A grid of `overlay` thumbnails, each fitted into a `thumb_size` square and captioned.

    `items` are (caption, image, result) triples, laid out row by row; `columns` defaults to about the
    square root of their number (at most 8). Returns an RGB image of size
    (columns * thumb_size, rows * (thumb_size + caption height)).
    """
    if not items:
        raise ValueError("a contact sheet needs at least one image")
    if thumb_size < 16:
        raise ValueError(f"thumb_size must be at least 16 pixels; got {thumb_size}")
    columns = columns or min(MAX_COLUMNS, math.ceil(math.sqrt(len(items))))
    rows = math.ceil(len(items) / columns)
    font = default_font(size=max(9, thumb_size // 14))
    caption_h = font.getbbox("Ag")[3] + 6
    cell_h = thumb_size + caption_h
    sheet = Image.new("RGB", (columns * thumb_size, rows * cell_h), BACKGROUND)
    draw = ImageDraw.Draw(sheet)
    for i, (caption, image, result) in enumerate(items):
        x, y = (i % columns) * thumb_size, (i // columns) * cell_h
        thumb = overlay(*_fit_into(load_image(image), result, thumb_size - 4))
        sheet.paste(thumb, (x + (thumb_size - thumb.width) // 2, y + (thumb_size - thumb.height) // 2))
        draw.text(
            (x + 3, y + thumb_size + 2),
            _fit(draw, caption, font, thumb_size - 6),
            fill=(230, 230, 230),
            font=font,
        )
    return sheet


def evenly_spaced(count: int, limit: int) -> list[int]:
    """Up to `limit` indices spread evenly over range(count), first and last included."""
    if count <= limit:
        return list(range(count))
    return sorted({round(i * (count - 1) / (limit - 1)) for i in range(limit)}) if limit > 1 else [0]


def result_from_record(record: Mapping[str, Any]) -> Result:
    """The classed `Result` stored in a manifest record (labels are class names)."""
    size = (int(record["height"]), int(record["width"]))
    return result_from_instances(record["instances"], size, label_key="class")


def dataset_contact_sheet(
    layout: DatasetLayout,
    tasks: Sequence[ImageTask],
    records: Mapping[str, Mapping[str, Any]],
    *,
    max_images: int = 48,
    thumb_size: int = 192,
) -> Path | None:
    """Write ``contact_sheet.png`` for up to `max_images` labelled images spread over the sorted list;
    None (nothing written) when no image is labelled."""
    done = [t for t in tasks if records.get(t.rel, {}).get("status") == "done"]
    if not done:
        return None
    picked = [done[i] for i in evenly_spaced(len(done), max_images)]
    items = []
    for task in picked:
        result = result_from_record(records[task.rel])
        image = layout.path(layout.image_file(task.rel, task.split, task.stem))
        items.append((f"{task.rel} ({len(result)})", image, result))
    sheet = contact_sheet(items, thumb_size=thumb_size)
    target = layout.path("contact_sheet.png")
    with atomic_path(target) as tmp:
        sheet.save(tmp, format="PNG")
    return target


def _fit_into(image: np.ndarray, result: Result, side: int) -> tuple[np.ndarray, Result]:
    """Scale an (H, W, 3) image and its result (masks nearest-neighbour, boxes scaled) to fit a square
    of `side` pixels, up or down, so that captions are drawn at a readable size on every thumbnail."""
    h, w = image.shape[:2]
    scale = min(side / w, side / h)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))  # PIL order: (W, H)
    scaled = np.asarray(Image.fromarray(image).resize(size, Image.Resampling.BILINEAR))
    masks = (
        np.stack(
            [
                np.asarray(Image.fromarray(result.mask(i)).resize(size, Image.Resampling.NEAREST))
                for i in range(len(result))
            ]
        )
        if len(result)
        else np.zeros((0, size[1], size[0]), dtype=bool)
    )
    boxes = result.boxes * np.array([size[0] / w, size[1] / h] * 2, dtype=np.float32)
    return scaled, Result(masks, boxes, result.labels, result.scores, result.mask_scores, (size[1], size[0]))


def _fit(draw: ImageDraw.ImageDraw, text: str, font: Any, width: int) -> str:
    """`text`, shortened from the left with "…" until it fits in `width` pixels."""
    if draw.textlength(text, font=font) <= width:
        return text
    while len(text) > 1 and draw.textlength("…" + text, font=font) > width:
        text = text[1:]
    return "…" + text
