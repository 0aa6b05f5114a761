"""The text-stage models as data: one entry per detector, built through :func:`build_detector`.

A detector family is either a box detector (Grounding DINO: phrases → boxes, SAM draws the masks) or a
text segmenter (SAM 3: phrases → masks itself, no SAM stage needed).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from grounded_sam.devices import Device
from grounded_sam.registry import Registry
from grounded_sam.text.base import Labeler
from grounded_sam.text.grounding_dino import GroundingDinoDetector, snapshot_spec
from grounded_sam.text.sam3 import SAM3_WEIGHTS, Sam3Segmenter, resolve_sam3_weights
from grounded_sam.weights import WeightsSpec, resolve_weights

DetectorFamily = Literal["grounding_dino", "sam3"]


@dataclass(frozen=True)
class DetectorSpec:
    """A registered detector: its weights (a Hugging Face snapshot folder), family and a one-line summary."""

    name: str
    weights: WeightsSpec
    description: str
    family: DetectorFamily = "grounding_dino"

    @property
    def segments(self) -> bool:
        """Whether the detector gives masks itself (a text segmenter), so no SAM stage is needed."""
        return self.family == "sam3"


_Spec = TypeVar("_Spec")


def _table(*specs: Any) -> dict[str, Any]:
    return {spec.name: spec for spec in specs}


def lookup(table: Mapping[str, _Spec], name: str, kind: str) -> _Spec:
    """``table[name]``; unknown names are answered with the closest registered ones."""
    return Registry(kind, table).get(name)


_DETECTORS: dict[str, DetectorSpec] = _table(
    DetectorSpec(
        "grounding_dino_tiny",
        snapshot_spec("IDEA-Research/grounding-dino-tiny"),
        "Grounding DINO, Swin-T backbone (172M parameters), transformers format",
    ),
    DetectorSpec(
        "grounding_dino_base",
        snapshot_spec("IDEA-Research/grounding-dino-base"),
        "Grounding DINO, Swin-B backbone (233M parameters), transformers format",
    ),
    DetectorSpec(
        "sam3",
        SAM3_WEIGHTS,
        "SAM 3: phrases to instance masks itself (840M parameters), transformers format, gated on the Hub",
        family="sam3",
    ),
)


def list_detectors() -> list[str]:
    """Names of every registered detector, sorted."""
    return sorted(_DETECTORS)


def get_detector_spec(name: str) -> DetectorSpec:
    """The entry called ``name`` (or whose Hugging Face repo id is ``name``)."""
    by_repo = {spec.weights.hf_repo_id: spec for spec in _DETECTORS.values()}
    return by_repo.get(name) or lookup(_DETECTORS, name, "detector")


def build_detector(
    name: str = "grounding_dino_tiny",
    checkpoint: str | os.PathLike[str] | None = None,
    device: Device = None,
    **options: Any,
) -> GroundingDinoDetector | Sam3Segmenter:
    """A ready detector, its weights found through :func:`grounded_sam.weights.resolve_weights`.

    Args:
        name: a name from :func:`list_detectors` or its Hugging Face repo id.
        checkpoint: a folder holding the model and processor files (wins over every other location).
        device: where to run (default: CUDA when available, else the CPU).
        options: thresholds and settings of :class:`GroundingDinoDetector` (``box_threshold``,
            ``text_threshold``, ``max_boxes``, ``nms_threshold``, ``per_class``, ``phrase_score``) or of
            :class:`~grounded_sam.text.sam3.Sam3Segmenter` (``box_threshold``, ``mask_threshold``,
            ``max_boxes``, ``nms_threshold``, ``phrase_batch``).

    Raises:
        WeightsNotFoundError: the weights are nowhere to be found; the message names the folder to fill
            (and, for SAM 3, how to get access to its gated repository).
        ImportError: ``"sam3"`` with a ``transformers`` too old for it.

    Example:
        >>> detector = build_detector("grounding_dino_tiny", box_threshold=0.35)  # doctest: +SKIP
        >>> segmenter = build_detector("sam3", device="cpu")  # doctest: +SKIP
    """
    spec = get_detector_spec(name)
    if spec.family == "sam3":
        folder = resolve_sam3_weights(spec.name, checkpoint, spec.weights)
        return Sam3Segmenter.from_pretrained(folder, device=device, **options)
    folder = resolve_weights(spec.name, spec.weights, checkpoint)
    return GroundingDinoDetector.from_pretrained(folder, device=device, **options)


def list_labelers() -> list[str]:
    """Names of every registered labeler (CLIP models), sorted."""
    from grounded_sam.text.clip import list_clip_models

    return list_clip_models()


def build_labeler(
    name: str = "clip_vit_b32",
    checkpoint: str | os.PathLike[str] | None = None,
    device: Device = None,
    **options: Any,
) -> Labeler:
    """A ready labeler (CLIP through open_clip), its weights found like every other model's.

    Example:
        >>> labeler = build_labeler("clip_vit_b32", threshold=0.3)  # doctest: +SKIP
    """
    from grounded_sam.text.clip import build_clip_labeler

    return build_clip_labeler(name, checkpoint=checkpoint, device=device, **options)
