"""Naming segment-everything masks with a CLIP labeler: the pipeline-level step after SAM's masks.

:class:`~grounded_sam.sam.everything.MaskGenerator` finds the masks (every label ``"object"``); a
:class:`~grounded_sam.text.base.Labeler` then names each one from the user's classes.

Example::

    result = everything_result(generator, image, ["car", "tree"], labeler=build_labeler())
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from grounded_sam.io import ImageInput, load_image
from grounded_sam.result import Result

if TYPE_CHECKING:
    from grounded_sam.sam.everything import MaskGenerator
    from grounded_sam.sam.everything.object_aware import BoxSource, DetectorLike
    from grounded_sam.text.base import Labeler


def name_masks(result: Result, pixels: np.ndarray, classes: Sequence[str], labeler: Labeler) -> Result:
    """``result`` with each mask named from ``classes`` by ``labeler`` (``pixels``: the (H, W, 3) RGB image).

    ``labels`` becomes a class or ``"no label"`` and ``scores`` the labeler's probability; masks, boxes
    and ``mask_scores`` (SAM's predicted IoU) are kept. An empty result is returned as it is.
    """
    if len(result) == 0:
        return result
    named = labeler.label(pixels, result.masks, list(classes))
    scores = np.asarray(named.scores, dtype=np.float32)
    return result.with_labels(named.names, scores)


def everything_result(
    generator: MaskGenerator,
    image: ImageInput,
    classes: Sequence[str] | None = None,
    *,
    labeler: Labeler | None = None,
    boxes: BoxSource = None,
    detector: DetectorLike | None = None,
    phrases: Sequence[str] = ("object",),
) -> Result:
    """The masks of ``generator.generate_result`` (grid mode, or box prompts with ``boxes``/``detector``),
    named by ``labeler`` when ``classes`` are given (see :func:`name_masks`).

    Without ``classes`` every label is ``"object"`` and ``scores`` is the predicted IoU.

    Raises:
        ValueError: ``classes`` without a ``labeler``.
    """
    if classes is not None and labeler is None:
        raise ValueError("classes were given but no labeler: pass labeler= (e.g. a ClipLabeler)")
    pixels = load_image(image)
    result = generator.generate_result(pixels, boxes=boxes, detector=detector, phrases=phrases)
    if classes is None or labeler is None:
        return result
    return name_masks(result, pixels, classes, labeler)
