"""``grounded_sam.predict``: text → masks with no set-up, through a lazily built default pipeline.

The default pipeline is the embedded demo model shipped in the package. Real weights replace it when
configured: ``GROUNDED_SAM_SAM_MODEL`` (e.g. ``sam_vit_b``, or a checkpoint path) and
``GROUNDED_SAM_DETECTOR`` (e.g. ``grounding_dino_tiny``, or a model folder), or pass ``pipeline=``.
``GROUNDED_SAM_DETECTOR=sam3`` (or a SAM 3 folder) alone gives SAM 3, which segments by itself: no SAM
model is built unless ``GROUNDED_SAM_SAM_MODEL`` names one.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from grounded_sam.devices import PrecisionRequest
from grounded_sam.io import ImageInput
from grounded_sam.pipeline import GroundedSAM, Prompt
from grounded_sam.result import Result

if TYPE_CHECKING:
    from grounded_sam.sam.everything import MaskGenerator
    from grounded_sam.text.base import Labeler

SAM_ENV = "GROUNDED_SAM_SAM_MODEL"
DETECTOR_ENV = "GROUNDED_SAM_DETECTOR"
DEMO = "demo"
DEMO_SAM = "demo_sam"  # the registry name of the embedded demo SAM


def _name_or_path(value: str) -> tuple[str | None, str | None]:
    """A registry name, or (no name, the path) when ``value`` points at a file or folder."""
    return (None, value) if Path(value).expanduser().exists() else (value, None)


def _detector_name_or_path(value: str) -> tuple[str, str | None]:
    """The registry name to build ``value`` with, and its folder when it is one (SAM 3 told by its config)."""
    name, path = _name_or_path(value)
    if path is None:
        return str(name), None
    from grounded_sam.text.sam3 import is_sam3_folder

    return ("sam3" if is_sam3_folder(path) else "grounding_dino_tiny"), path


@functools.lru_cache(maxsize=2)
def default_pipeline(
    sam: str | None = None,
    detector: str | None = None,
    device: str | None = None,
    precision: PrecisionRequest = "float32",
) -> GroundedSAM:
    """The pipeline :func:`predict` uses, built once per (sam, detector, device, precision) and cached.

    ``sam``/``detector`` default to the environment variables above, then to the embedded demo model;
    a detector that segments itself (SAM 3) gets no SAM unless one is named. A SAM named without a
    detector draws the masks of the demo text stage's boxes (so ``--sam`` alone works everywhere).
    """
    sam = sam or os.environ.get(SAM_ENV)
    detector = detector or os.environ.get(DETECTOR_ENV) or DEMO
    if detector == DEMO:
        from grounded_sam.demo import build_demo_pipeline

        demo = build_demo_pipeline(device=device, precision=precision)
        if sam in (None, DEMO, DEMO_SAM):
            return demo
        # The demo text stage finds the boxes (with its own small SAM); the named SAM draws the masks.
        from grounded_sam.pipeline import build_predictor

        sam_name, sam_path = _name_or_path(sam)
        return GroundedSAM(demo.detector, build_predictor(sam_name, sam_path, device, precision))
    from grounded_sam.text.registry import get_detector_spec

    detector_name, detector_path = _detector_name_or_path(detector)
    if sam is None and not get_detector_spec(detector_name).segments:
        sam = DEMO
    sam_name, sam_path = _name_or_path(sam) if sam is not None else (None, None)
    return GroundedSAM.from_pretrained(
        DEMO_SAM if sam_name == DEMO else sam_name,
        detector_name,
        sam_checkpoint=sam_path,
        detector_checkpoint=detector_path,
        device=device,
        precision=precision,
    )


def default_mask_generator(
    sam: str | None = None,
    device: str | None = None,
    *,
    points_per_side: int | None = None,
) -> MaskGenerator:
    """The segment-everything generator on :func:`default_pipeline`'s SAM (sharing its predictor).

    The demo model gets its tuned settings, other models the defaults. The labeler that names its masks
    with classes is :func:`default_everything_labeler`'s.

    Raises:
        ValueError: when the configured SAM is not one of this package's (e.g. SAM 2).
    """
    import dataclasses

    from grounded_sam.sam.everything import EverythingConfig, MaskGenerator
    from grounded_sam.sam.predictor import SamPredictor

    demo = _is_demo(sam)
    pipeline = default_pipeline(sam, None, device)
    if not isinstance(pipeline.predictor, SamPredictor):
        raise ValueError(
            "segment everything needs one of this package's SAM models (sam_vit_b/l/h, mobile_sam, "
            f"demo_sam); the configured SAM is a {type(pipeline.predictor).__name__}"
        )
    if demo:
        from grounded_sam.demo import DEMO_EVERYTHING_OUTPUT

        config = DEMO_EVERYTHING_OUTPUT
    else:
        config = EverythingConfig()
    if points_per_side is not None:
        config = dataclasses.replace(config, points_per_side=points_per_side)
    # One embedding per image, shared with the box stage.
    predictor = pipeline.predictor
    return MaskGenerator(predictor.model, config=config, predictor=predictor)


def default_everything_labeler(sam: str | None = None, device: str | None = None) -> Labeler:
    """The CLIP labeler that names :func:`default_mask_generator`'s masks: the embedded demo CLIP for the
    demo model, the registry's default labeler otherwise."""
    if _is_demo(sam):
        from grounded_sam.text.demo_clip import demo_clip_labeler

        return demo_clip_labeler(device=device)
    from grounded_sam.text.registry import build_labeler

    return build_labeler(device=device)


def _is_demo(sam: str | None) -> bool:
    """Whether ``sam`` (or the ``SAM_ENV`` default) is the embedded demo model."""
    return (sam or os.environ.get(SAM_ENV) or DEMO) in (DEMO, DEMO_SAM)


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
