"""``grounded_sam.predict``: text → masks with no set-up, through a lazily built default pipeline.

The default pipeline is the embedded demo model shipped in the package. Real weights replace it when
configured: ``GROUNDED_SAM_SAM_MODEL`` (e.g. ``sam_vit_b``, or a checkpoint path) and
``GROUNDED_SAM_DETECTOR`` (e.g. ``grounding_dino_tiny``, or a model folder), or pass ``pipeline=``.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence
from pathlib import Path

from grounded_sam.io import ImageInput
from grounded_sam.pipeline import GroundedSAM, Prompt
from grounded_sam.result import Result

SAM_ENV = "GROUNDED_SAM_SAM_MODEL"
DETECTOR_ENV = "GROUNDED_SAM_DETECTOR"
DEMO = "demo"


def _name_or_path(value: str) -> tuple[str | None, str | None]:
    """A registry name, or (no name, the path) when ``value`` points at a file or folder."""
    return (None, value) if Path(value).expanduser().exists() else (value, None)


@functools.lru_cache(maxsize=2)
def default_pipeline(
    sam: str | None = None, detector: str | None = None, device: str | None = None
) -> GroundedSAM:
    """The pipeline :func:`predict` uses, built once per (sam, detector, device) and cached.

    ``sam``/``detector`` default to the environment variables above, then to the embedded demo model.
    """
    sam = sam or os.environ.get(SAM_ENV) or DEMO
    detector = detector or os.environ.get(DETECTOR_ENV) or DEMO
    if sam == DEMO and detector == DEMO:
        from grounded_sam.demo import build_demo_pipeline

        return build_demo_pipeline(device=device)
    sam_name, sam_path = _name_or_path(sam)
    detector_name, detector_path = _name_or_path(detector)
    return GroundedSAM.from_pretrained(
        sam_name,
        detector_name or "grounding_dino_tiny",
        sam_checkpoint=sam_path,
        detector_checkpoint=detector_path,
        device=device,
    )


def predict(
    image: ImageInput | Sequence[ImageInput],
    text: Prompt,
    *,
    box_threshold: float | None = None,
    text_threshold: float | None = None,
    pipeline: GroundedSAM | None = None,
) -> Result | list[Result]:
    """Masks of everything ``text`` names; a list of images gives a list of results.

    Example:
        >>> import grounded_sam
        >>> result = grounded_sam.predict("kitchen.jpg", "window")  # doctest: +SKIP
        >>> result.masks.shape  # (N, H, W) bool  # doctest: +SKIP
    """
    model = pipeline or default_pipeline()
    thresholds = {"box_threshold": box_threshold, "text_threshold": text_threshold}
    if isinstance(image, list | tuple):
        return model.predict_batch(image, text, **thresholds)
    return model.predict(image, text, **thresholds)
