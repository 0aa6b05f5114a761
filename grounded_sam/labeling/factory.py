"""How a labelling run gets its pipeline: a picklable factory (for Ray workers) and a stable
description of the model for the settings fingerprint."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

from grounded_sam.pipeline import GroundedSAM

PipelineFactory = Callable[[], GroundedSAM]


def describe_model(pipeline: GroundedSAM | None, factory: PipelineFactory | None) -> str:
    """A stable name for the model part of the settings fingerprint (no memory addresses)."""
    if pipeline is not None:
        sam = type(getattr(pipeline.predictor, "model", pipeline.predictor)).__name__
        return f"{type(pipeline.detector).__module__}.{type(pipeline.detector).__qualname__}+{sam}"
    if factory is not None:
        func = getattr(factory, "func", factory)  # functools.partial
        args = [repr(a) for a in getattr(factory, "args", ())]
        name = getattr(func, "__qualname__", type(func).__name__)
        return f"{getattr(func, '__module__', '')}.{name}({', '.join(args)})"
    from grounded_sam.api import DETECTOR_ENV, SAM_ENV

    sam, detector = os.environ.get(SAM_ENV, "demo"), os.environ.get(DETECTOR_ENV, "demo")
    return f"default_pipeline(sam={sam}, detector={detector})"


def resolve_factory(pipeline: GroundedSAM | None, factory: PipelineFactory | None) -> PipelineFactory:
    """The factory a run builds its pipeline with: the given one, the given pipeline, or the default."""
    if pipeline is not None and factory is not None:
        raise ValueError("pass either pipeline= or pipeline_factory=, not both")
    if factory is not None:
        return factory
    if pipeline is not None:
        return GivenPipeline(pipeline)
    from grounded_sam.api import default_pipeline

    return default_pipeline


@dataclass(frozen=True)
class GivenPipeline:
    """A picklable factory returning a pipeline built by the caller."""

    pipeline: GroundedSAM

    def __call__(self) -> GroundedSAM:
        return self.pipeline
