"""Which pipeline the app serves: an injected factory, configured weights or the embedded demo."""

from __future__ import annotations

import pytest

from grounded_sam.pipeline import GroundedSAM
from grounded_sam.ui.models import PIPELINE_ENV, build_models, describe_models, load_factory
from tests.pipelines import scripted_pipeline


def test_injected_factory_is_built_and_described() -> None:
    models = build_models({PIPELINE_ENV: "tests.pipelines:scripted_pipeline"})
    assert isinstance(models.pipeline, GroundedSAM)
    assert models.description == "custom pipeline tests.pipelines:scripted_pipeline (on cpu)"
    assert load_factory("tests.pipelines:scripted_pipeline") is scripted_pipeline


def test_default_pipeline_gets_the_configured_names(monkeypatch) -> None:
    calls = []
    monkeypatch.setattr(
        "grounded_sam.api.default_pipeline", lambda *args: calls.append(args) or scripted_pipeline()
    )
    env = {"GROUNDED_SAM_SAM_MODEL": "sam_vit_b", "GROUNDED_SAM_DETECTOR": "grounding_dino_tiny"}
    models = build_models(env, device="cpu")
    assert calls == [("sam_vit_b", "grounding_dino_tiny", "cpu")]
    assert models.description.startswith("configured weights: SAM sam_vit_b, detector grounding_dino_tiny")
    assert describe_models({}) == "embedded demo model"
    assert (
        describe_models({"GROUNDED_SAM_SAM_MODEL": "x.pth"}) == "configured weights: SAM x.pth, detector demo"
    )


@pytest.mark.parametrize(
    ("spec", "match"),
    [
        ("tests.pipelines", "must look like"),
        (":scripted_pipeline", "must look like"),
        ("no_such_module_xyz:f", "cannot import"),
        ("tests.pipelines:SCENE", "no callable"),
    ],
)
def test_bad_factories_are_explained(spec: str, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        load_factory(spec)


def test_a_factory_must_return_a_grounded_sam() -> None:
    with pytest.raises(TypeError, match="needs a GroundedSAM"):
        build_models({PIPELINE_ENV: "tests.ui.results:scene_result"})


def test_a_sam3_factory_runs_where_its_segmenter_runs() -> None:
    models = build_models({PIPELINE_ENV: "tests.text.sam3_builders:tiny_sam3_pipeline"})
    assert models.pipeline.predictor is None
    assert models.description == "custom pipeline tests.text.sam3_builders:tiny_sam3_pipeline (on cpu)"
