"""Draw a `Result` on its image: translucent masks with outlines, boxes and "label score" captions."""

from __future__ import annotations

import colorsys
import zlib
from collections.abc import Mapping
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from grounded_sam.io import ImageInput, load_image

if TYPE_CHECKING:
    from grounded_sam.result import Result

Color = tuple[int, int, int]


def label_color(label: str) -> Color:
    """A stable, saturated RGB colour for `label` (the same in every process and run)."""
    digest = zlib.crc32(label.encode("utf-8"))
    hue = (digest % 360) / 360.0
    saturation = 0.65 + 0.3 * ((digest >> 9) % 8) / 7.0
    value = 0.8 + 0.2 * ((digest >> 12) % 4) / 3.0
    r, g, b = colorsys.hsv_to_rgb(hue, saturation, value)
    return round(r * 255), round(g * 255), round(b * 255)


def overlay(
    image: ImageInput,
    result: Result,
    *,
    alpha: float = 0.5,
    show_boxes: bool = True,
    show_labels: bool = True,
    colors: Mapping[str, Color] | None = None,
) -> Image.Image:
    """Return an RGB PIL image of `image` with `result` drawn on it, same size as the input.

    Each mask is blended with its label's colour (`colors[label]` if given, else `label_color`) with
    opacity `alpha` and outlined; where masks overlap the smaller one is drawn on top. Boxes (XYXY, input
    pixels) and "label score" captions use the same colour and Pillow's default font.

    Example::

        overlay("street.jpg", result, alpha=0.4).save("street_overlay.png")
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1]; got {alpha}")
    rgb = load_image(image)
    if rgb.shape[:2] != result.image_size:
        raise ValueError(
            f"the image is {rgb.shape[0]}x{rgb.shape[1]} (HxW) but the result was made for "
            f"{result.image_size[0]}x{result.image_size[1]}; pass the image the result came from"
        )
    colors = colors or {}
    palette = np.array(
        [colors.get(label) or label_color(label) for label in result.labels], dtype=np.float32
    ).reshape(-1, 3)
    canvas = Image.fromarray(_blend_masks(rgb, result.instance_map(), palette, alpha))
    if len(result) and (show_boxes or show_labels):
        _draw_boxes_and_captions(canvas, result, palette.astype(np.uint8), show_boxes, show_labels)
    return canvas


def _blend_masks(rgb: np.ndarray, owner: np.ndarray, palette: np.ndarray, alpha: float) -> np.ndarray:
    """Tint every covered pixel with its owner's colour and paint each region's border opaque."""
    out = rgb.copy()
    covered = owner >= 0
    if not covered.any():
        return out
    tint = palette[owner[covered]]
    out[covered] = np.round(rgb[covered] * (1.0 - alpha) + tint * alpha).astype(np.uint8)
    border = _region_borders(owner) & covered
    out[border] = palette[owner[border]].astype(np.uint8)
    return out


def _region_borders(owner: np.ndarray) -> np.ndarray:
    """(H, W) bool: pixels whose owner differs from one of their 4 neighbours."""
    border = np.zeros(owner.shape, dtype=bool)
    horizontal = owner[:, 1:] != owner[:, :-1]
    vertical = owner[1:, :] != owner[:-1, :]
    border[:, 1:] |= horizontal
    border[:, :-1] |= horizontal
    border[1:, :] |= vertical
    border[:-1, :] |= vertical
    return border


def _draw_boxes_and_captions(
    canvas: Image.Image, result: Result, palette: np.ndarray, show_boxes: bool, show_labels: bool
) -> None:
    draw = ImageDraw.Draw(canvas)
    width, height = canvas.size
    line_width = max(1, round(max(width, height) / 400))
    if show_boxes:
        for box, color in zip(result.boxes, palette, strict=True):
            outline = tuple(int(c) for c in color)
            draw.rectangle(_clip_box(box, width, height), outline=outline, width=line_width)
    if not show_labels:
        return
    font = default_font(size=int(np.clip(max(width, height) / 45, 10, 36)))
    pad = max(1, line_width)
    # Captions go last so that no box is drawn over a caption.
    for inst, color in zip(result, palette, strict=True):
        text = f"{inst.label} {inst.score:.2f}"
        left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
        tw, th = right - left + 2 * pad, bottom - top + 2 * pad
        x1, y1, _, _ = _clip_box(inst.box, width, height)
        x = min(x1, max(0, width - tw))
        y = y1 - th if y1 - th >= 0 else y1  # above the box, or inside it at the top edge
        fill = tuple(int(c) for c in color)
        draw.rectangle((x, y, x + tw - 1, y + th - 1), fill=fill)
        text_color = (0, 0, 0) if _luminance(color) > 140 else (255, 255, 255)
        draw.text((x + pad - left, y + pad - top), text, fill=text_color, font=font)


def _clip_box(box: np.ndarray, width: int, height: int) -> tuple[int, int, int, int]:
    x1, y1, x2, y2 = (round(float(v)) for v in box)
    x1, x2 = sorted((min(max(x1, 0), width - 1), min(max(x2, 0), width - 1)))
    y1, y2 = sorted((min(max(y1, 0), height - 1), min(max(y2, 0), height - 1)))
    return x1, y1, x2, y2


def _luminance(color: np.ndarray) -> float:
    r, g, b = (float(c) for c in color)
    return 0.299 * r + 0.587 * g + 0.114 * b


def default_font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    """Pillow's bundled font at ``size`` pixels (a bitmap font when FreeType is missing)."""
    try:
        return ImageFont.load_default(size=size)  # scalable bundled font when FreeType is available
    except (ImportError, OSError, TypeError):
        return ImageFont.load_default()
