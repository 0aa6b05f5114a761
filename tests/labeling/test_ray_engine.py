"""The Ray engine on a local two-CPU Ray instance gives the local engine's dataset, byte for byte."""

from __future__ import annotations

from pathlib import Path

import pytest

from grounded_sam.labeling import label_dataset
from tests.labeling.helpers import ONTOLOGY, factory, tree_bytes

ray = pytest.importorskip("ray")
pytest.importorskip("ray.data")

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def local_ray():
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        logging_level="ERROR",
        runtime_env={"env_vars": {"PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}},
    )
    yield
    ray.shutdown()


def test_ray_equals_local(scenes, tmp_path, local_ray) -> None:
    folder, _ = scenes
    options = {"format": "coco", "split": "0.5,0.5", "model_id": "scripted", "contact_sheet": True}
    local = label_dataset(folder, ONTOLOGY, tmp_path / "local", pipeline_factory=factory(folder), **options)
    seen = []
    distributed = label_dataset(
        folder,
        ONTOLOGY,
        tmp_path / "ray",
        pipeline_factory=factory(folder),
        engine="ray",
        workers=2,
        batch_size=2,
        progress=seen.append,
        **options,
    )
    assert (distributed.labelled, distributed.failed) == (local.labelled, local.failed) == (8, local.failed)
    assert sorted(u.outcome.rel for u in seen[1:]) == sorted(
        [*(t for t in _labelled(tmp_path / "local")), "sub/broken.png"]
    )
    assert ray.is_initialized()  # a Ray instance the caller started is left running
    assert tree_bytes(tmp_path / "ray") == tree_bytes(tmp_path / "local")


def _labelled(out: Path) -> list[str]:
    return [
        p.relative_to(out / "images").as_posix().split("/", 1)[1] for p in (out / "images").rglob("*.png")
    ]
