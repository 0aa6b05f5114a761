"""The models behind the app: built once per process, shared by every browser session under a lock.

Which pipeline is used:

1. ``$GROUNDED_SAM_APP_PIPELINE="package.module:factory"``: a function returning a
   :class:`~grounded_sam.pipeline.GroundedSAM` (tests use ``tests.pipelines:scripted_pipeline``);
2. otherwise :func:`grounded_sam.api.default_pipeline`: the weights named by ``$GROUNDED_SAM_SAM_MODEL``
   and ``$GROUNDED_SAM_DETECTOR`` when set, else the embedded demo model.
"""

from __future__ import annotations

import importlib
import logging
import os
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from grounded_sam.api import DETECTOR_ENV, SAM_ENV
from grounded_sam.pipeline import GroundedSAM
from grounded_sam.ui.refine import EmbeddingCache

logger = logging.getLogger(__name__)

PIPELINE_ENV = "GROUNDED_SAM_APP_PIPELINE"


@dataclass
class Models:
    """What :func:`build_models` returns: the pipeline, how to name it, and the per-image embeddings.

    ``lock`` serialises model calls: browser sessions run in threads and share one predictor.
    """

    pipeline: GroundedSAM
    description: str
    embeddings: EmbeddingCache = field(default_factory=EmbeddingCache)
    lock: threading.RLock = field(default_factory=threading.RLock)


def load_factory(spec: str) -> Callable[[], GroundedSAM]:
    """The callable named by ``"package.module:function"``; ValueError saying what is wrong otherwise."""
    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise ValueError(f"${PIPELINE_ENV} must look like 'package.module:function'; got {spec!r}")
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise ValueError(f"${PIPELINE_ENV}={spec!r}: cannot import {module_name!r} ({error})") from error
    factory = getattr(module, attribute, None)
    if not callable(factory):
        raise ValueError(f"${PIPELINE_ENV}={spec!r}: {module_name!r} has no callable {attribute!r}")
    return factory


def describe_models(environ: Mapping[str, str] | None = None) -> str:
    """A one-line, human description of the pipeline :func:`build_models` builds for ``environ``."""
    env = os.environ if environ is None else environ
    if env.get(PIPELINE_ENV):
        return f"custom pipeline {env[PIPELINE_ENV]}"
    sam, detector = env.get(SAM_ENV), env.get(DETECTOR_ENV)
    if sam or detector:
        return f"configured weights: SAM {sam or 'demo'}, detector {detector or 'demo'}"
    return "embedded demo model"


def build_models(environ: Mapping[str, str] | None = None, device: str | None = None) -> Models:
    """Build the app's pipeline (see the module docstring for the order); slow, call once per process."""
    env = os.environ if environ is None else environ
    spec = env.get(PIPELINE_ENV)
    if spec:
        pipeline = load_factory(spec)()
    else:
        from grounded_sam.api import default_pipeline

        pipeline = default_pipeline(env.get(SAM_ENV), env.get(DETECTOR_ENV), device)
    if not isinstance(pipeline, GroundedSAM):
        raise TypeError(
            f"the app needs a GroundedSAM pipeline; the factory returned {type(pipeline).__name__}"
        )
    runs_on = getattr(pipeline.predictor or pipeline.detector, "device", "an unknown device")
    description = f"{describe_models(env)} (on {runs_on})"
    logger.info("app models: %s", description)
    return Models(pipeline, description)
