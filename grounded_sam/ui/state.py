"""One browser session's state (image, results, visibility, refinements) and the table it shows.

Everything here is plain data over :class:`~grounded_sam.result.Result`; the page keeps one
:class:`AppState` in ``st.session_state``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from grounded_sam.result import Result
from grounded_sam.ui.refine import InstanceEdit
from grounded_sam.ui.uploads import image_id


@dataclass
class AppState:
    """The state of one browser session.

    Attributes:
        image: (H, W, 3) uint8 RGB, or None before an image is chosen.
        image_key: content hash of ``image`` (the key of its cached embedding).
        image_name: file name used for downloads.
        result: the last text-prompt result (refinements applied).
        shown: (N,) bool, which instances of ``result`` are shown and exported.
        edits: instance index -> its refinement prompts.
        everything: the last segment-everything result.
        inpainted: the last inpainting output, (H, W, 3) uint8.
        generation: counts text results, so that widgets of an older result are not reused for a new one.
    """

    image: np.ndarray | None = None
    image_key: str | None = None
    image_name: str = "image.png"
    result: Result | None = None
    shown: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))
    edits: dict[int, InstanceEdit] = field(default_factory=dict)
    everything: Result | None = None
    inpainted: np.ndarray | None = None
    generation: int = 0

    def use_image(self, pixels: np.ndarray, name: str) -> bool:
        """Switch to ``pixels``; returns True (and forgets every result) when it is a different image."""
        key = image_id(pixels)
        if key == self.image_key:
            return False
        self.image, self.image_key, self.image_name = pixels, key, name
        self.result, self.everything, self.inpainted = None, None, None
        self.shown = np.zeros(0, dtype=bool)
        self.edits = {}
        return True

    def forget_image(self) -> None:
        """No image and no results (after a rejected upload: nothing of the previous image stays)."""
        self.image, self.image_key, self.image_name = None, None, "image.png"
        self.result, self.everything, self.inpainted = None, None, None
        self.shown = np.zeros(0, dtype=bool)
        self.edits = {}

    def clicked_instance(self, x: float, y: float) -> int | None:
        """The shown instance whose mask holds pixel (x, y), the smallest when several do (the one drawn on
        top); None when the click is on no shown instance."""
        if self.result is None:
            return None
        hits = [i for i in np.flatnonzero(self.shown) if self.result.masks[i, int(y), int(x)]]
        if not hits:
            return None
        return int(min(hits, key=lambda i: (int(self.result.masks[i].sum()), i)))

    def set_result(self, result: Result) -> None:
        """A new text result: every instance shown, no refinements."""
        self.result = result
        self.generation += 1
        self.shown = np.ones(len(result), dtype=bool)
        self.edits = {}
        self.inpainted = None

    def visible(self) -> Result | None:
        """The shown instances of ``result`` (what is drawn and exported)."""
        return None if self.result is None else self.result[self.shown]

    def set_shown(self, index: int, shown: bool) -> None:
        self.shown[index] = shown

    def edit_of(self, index: int) -> InstanceEdit:
        """The refinement prompts of instance ``index`` (a fresh one from its box if none yet)."""
        if self.result is None or not 0 <= index < len(self.result):
            raise IndexError(f"no instance {index} to refine; run a text prompt first")
        return self.edits.get(index) or InstanceEdit(box=self.result.boxes[index].copy())


def instance_table(result: Result, shown: np.ndarray | None = None) -> list[dict[str, Any]]:
    """One row per instance: index, label, detector score, SAM mask score, area in pixels, shown."""
    visible = np.ones(len(result), dtype=bool) if shown is None else shown
    return [
        {
            "#": i,
            "label": inst.label,
            "score": round(inst.score, 3),
            "mask score": round(inst.shown_mask_score, 3),
            "area (px)": int(area),
            "shown": bool(visible[i]),
        }
        for i, (inst, area) in enumerate(zip(result, result.areas, strict=True))
    ]


def click_to_pixels(click: Mapping[str, Any], image_size: tuple[int, int]) -> tuple[float, float]:
    """A click ``{"x", "y", "width", "height"}`` on the displayed image -> (x, y) in image pixels.

    The displayed image may be scaled to fit the page; the click is scaled back and clipped to the image.
    """
    height, width = image_size
    shown_w = float(click.get("width") or width)
    shown_h = float(click.get("height") or height)
    x = float(click["x"]) * width / shown_w
    y = float(click["y"]) * height / shown_h
    return min(max(x, 0.0), width - 1.0), min(max(y, 0.0), height - 1.0)
