"""The Ray engine: the same per-image work as the local engine, spread over Ray Data actors.

Each actor builds its pipeline once from a picklable factory, receives batches of image tasks streamed
by Ray Data and writes each image's files and record with the same atomic writer as the local engine,
so the dataset is identical. Needs the ``ray`` extra: ``pip install "grounded_sam[ray]"``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import asdict
from types import ModuleType
from typing import Any

import numpy as np

from grounded_sam.labeling.batch import label_batch
from grounded_sam.labeling.factory import PipelineFactory
from grounded_sam.labeling.manifest import ImageTask
from grounded_sam.labeling.summary import ImageOutcome
from grounded_sam.labeling.writers import DatasetLayout

logger = logging.getLogger(__name__)


class LabelWorker:
    """A Ray Data actor: one pipeline per process; a batch of task columns in, outcome columns out."""

    def __init__(self, factory: PipelineFactory, layout: DatasetLayout) -> None:
        self.pipeline = factory()
        self.layout = layout

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, list[Any]]:
        tasks = [
            ImageTask(str(rel), str(source), str(split), int(image_id), str(stem))
            for rel, source, split, image_id, stem in zip(
                batch["rel"], batch["source"], batch["split"], batch["image_id"], batch["stem"], strict=True
            )
        ]
        outcomes = label_batch(self.pipeline, self.layout, tasks)
        return {
            "rel": [o.rel for o in outcomes],
            "status": [o.status for o in outcomes],
            "instances": [o.instances for o in outcomes],
            "reason": [o.reason for o in outcomes],
        }


def run_ray(
    factory: PipelineFactory,
    layout: DatasetLayout,
    tasks: Sequence[ImageTask],
    *,
    workers: int,
    batch_size: int,
) -> Iterator[ImageOutcome]:
    """Label `tasks` on `workers` Ray actors, yielding outcomes as they stream back (in any order).

    Uses the running Ray instance if there is one (e.g. ``ray.init(address="auto")`` on a cluster),
    otherwise starts a local one for the duration of the call.
    """
    if not tasks:
        return
    ray = require_ray()
    started = not ray.is_initialized()
    if started:
        ray.init(include_dashboard=False, logging_level=logging.WARNING)
    try:
        context = ray.data.DataContext.get_current()
        context.enable_progress_bars = False
        cpus = float(ray.cluster_resources().get("CPU", 1.0))
        dataset = ray.data.from_items(
            [asdict(task) for task in tasks], override_num_blocks=max(1, -(-len(tasks) // batch_size))
        )
        outcomes = dataset.map_batches(
            LabelWorker,
            fn_constructor_kwargs={"factory": factory, "layout": layout},
            batch_size=batch_size,
            compute=ray.data.ActorPoolStrategy(size=workers),
            num_cpus=min(1.0, cpus / workers),
        )
        for row in outcomes.iter_rows():
            yield ImageOutcome(str(row["rel"]), row["status"], int(row["instances"]), str(row["reason"]))
    finally:
        if started:
            ray.shutdown()


def require_ray() -> ModuleType:
    """The ``ray`` module with Ray Data, or an ImportError naming the extra to install."""
    try:
        import ray
        import ray.data
    except ImportError as e:
        raise ImportError(
            'engine="ray" needs Ray Data: pip install "grounded_sam[ray]" (or pip install "ray[data]")'
        ) from e
    return ray
