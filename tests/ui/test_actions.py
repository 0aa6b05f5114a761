"""The app's actions on a scripted pipeline: text run, refine clicks without re-encoding, inpaint."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from grounded_sam.ui import actions
from grounded_sam.ui.models import Models
from grounded_sam.ui.state import AppState
from tests.pipelines import SCENE, scripted_pipeline
from tests.ui.results import scene_result


@pytest.fixture
def models() -> Models:
    torch.manual_seed(0)
    return Models(scripted_pipeline(), "scripted")


@pytest.fixture
def state() -> AppState:
    state = AppState()
    state.use_image(SCENE.image, "scene.png")
    return state


def _encoder_calls(models: Models) -> int:
    return models.pipeline.predictor.model.image_encoder.calls


def test_text_run_then_clicks_reuse_the_embedding(models, state) -> None:
    result = actions.run_text(models, state, ". ".join(SCENE.labels), 0.3, 0.25)
    assert result.labels == SCENE.labels and state.result is result
    assert _encoder_calls(models) == 1
    for positive in (True, False, True):
        actions.add_point(models, state, 0, 20.0, 30.0, positive)
    assert _encoder_calls(models) == 1
    assert [p[2] for p in state.edits[0].points] == [1, 0, 1]
    actions.clear_points(models, state, 0)
    assert 0 not in state.edits and _encoder_calls(models) == 1


def test_clicks_still_work_when_another_image_was_embedded_since(models, state) -> None:
    actions.run_text(models, state, SCENE.labels[0])
    models.pipeline.predictor.set_image(np.ascontiguousarray(SCENE.image[:, ::-1]))  # another session's image
    kept = models.embeddings.predictor_for(state.image_key, SCENE.image, models.pipeline.predictor)
    actions.add_point(models, state, 0, 5.0, 5.0, True)
    assert _encoder_calls(models) == 2  # the text run and the other image: the session's embedding was kept
    assert kept.original_size == (120, 160) and state.edits[0].points == ((5.0, 5.0, 1),)


def test_nothing_found_keeps_no_stale_embedding(models, state) -> None:
    models.pipeline.predictor.set_image(np.zeros((32, 32, 3), np.uint8))
    result = actions.run_text(models, state, "nothing like this")
    assert len(result) == 0 and state.image_key not in models.embeddings


def test_actions_need_an_image_and_a_result(models) -> None:
    empty = AppState()
    with pytest.raises(ValueError, match="upload an image"):
        actions.run_text(models, empty, "x")
    empty.use_image(SCENE.image, "scene.png")
    with pytest.raises(ValueError, match="run a text prompt"):
        actions.add_point(models, empty, 0, 1.0, 1.0, True)
    with pytest.raises(ValueError, match="no instance is shown"):
        actions.inpaint_shown(empty, prompt=None, dilate=3)


def test_inpaint_removes_only_the_shown_instances(state) -> None:
    state.set_result(scene_result())
    state.set_shown(0, False)
    out = actions.inpaint_shown(state, prompt=None, dilate=0)
    changed = (out != SCENE.image).any(axis=2)
    assert not changed[SCENE.masks[0]].any()
    assert changed[SCENE.masks[1]].mean() > 0.5
    assert state.inpainted is out


def test_everything_wraps_the_mask_generator_when_present(models) -> None:
    strict = actions.segment_everything(models, SCENE.image, None, None, points_per_side=4)
    found = actions.segment_everything(
        models, SCENE.image, None, None, points_per_side=4, min_iou=0.0, min_stability=0.0
    )
    assert found.image_size == (120, 160) and len(found) >= len(strict)
    assert len(found) > 0, "with both filters off, a random SAM still gives masks"
    assert all(label == "object" for label in found.labels)


def test_everything_labeler_prefers_the_pipelines(models) -> None:
    class Named:
        def label(self, image, masks, classes):  # pragma: no cover - not called
            raise AssertionError

    models.pipeline.labeler = Named()
    labeler, source = actions.everything_labeler(models)
    assert labeler is models.pipeline.labeler and source == "the pipeline's labeler"


def test_a_sam3_pipeline_finds_masks_but_explains_that_clicks_are_off(state) -> None:
    from tests.text.sam3_builders import tiny_sam3_pipeline

    models = Models(tiny_sam3_pipeline(), "sam3")
    assert actions.sam_unavailable(models).startswith(
        "refining with clicks and segment everything need a SAM"
    )
    result = actions.run_text(models, state, "cat. dog")
    assert len(result) > 0 and state.result is result and result.masks.shape[1:] == (120, 160)
    assert state.image_key not in models.embeddings
    with pytest.raises(ValueError, match="Sam3Segmenter\\) draws its own masks"):
        actions.add_point(models, state, 0, 5.0, 5.0, True)
    with pytest.raises(ValueError, match="GROUNDED_SAM_SAM_MODEL"):
        actions.clear_points(models, state, 0)
    with pytest.raises(RuntimeError, match="need a SAM model"):
        actions.segment_everything(models, SCENE.image, None, None, points_per_side=4)
    assert state.result is result and not state.edits


def test_a_sam_pipeline_can_refine(models) -> None:
    assert actions.sam_unavailable(models) is None


def test_a_sam2_pipeline_refines_clicks_but_not_segment_everything(state) -> None:
    from grounded_sam.pipeline import GroundedSAM
    from grounded_sam.sam2 import Sam2Predictor
    from tests.pipelines import ScriptedDetector
    from tests.sam2.builders import tiny_sam2

    predictor = Sam2Predictor(tiny_sam2(seed=1))
    models = Models(GroundedSAM(ScriptedDetector(SCENE.boxes, SCENE.labels), predictor), "sam2")
    assert actions.sam_unavailable(models) is None
    result = actions.run_text(models, state, ". ".join(SCENE.labels))
    assert len(result) == len(SCENE.labels) and state.image_key in models.embeddings
    refined = actions.add_point(models, state, 0, 20.0, 30.0, True)
    assert isinstance(models.embeddings.predictor_for(state.image_key, SCENE.image, predictor), Sam2Predictor)
    assert len(state.edits[0].points) == 1 and state.edits[0].logits.shape[0] == 1
    np.testing.assert_array_equal(refined.masks[1:], result.masks[1:])
    assert refined.masks.shape == result.masks.shape
    with pytest.raises(RuntimeError, match="Sam2Predictor"):
        actions.segment_everything(models, SCENE.image, None, None, points_per_side=4)


def three_shapes() -> tuple[np.ndarray, list[np.ndarray]]:
    """A 640 x 480 image with three obvious shapes drawn on a plain background, and their masks."""
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (640, 480), (200, 200, 190))
    draw = ImageDraw.Draw(image)
    shapes = [
        ("ellipse", (60, 80, 220, 240), (220, 30, 30)),
        ("rectangle", (280, 260, 440, 420), (30, 60, 220)),
        ("polygon", [(500, 60), (600, 220), (400, 220)], (40, 180, 40)),
    ]
    masks = []
    for kind, where, colour in shapes:
        getattr(draw, kind)(where, fill=colour)
        mask = Image.new("1", image.size)
        getattr(ImageDraw.Draw(mask), kind)(where, fill=1)
        masks.append(np.asarray(mask))
    return np.asarray(image), masks


def test_the_everything_tab_opens_at_the_loaded_models_settings(models) -> None:
    from grounded_sam.demo import DEMO_EVERYTHING, DEMO_EVERYTHING_OUTPUT, build_demo_pipeline
    from grounded_sam.evaluation import mask_ious

    assert actions.everything_defaults(models) == (16, 0.88, 0.95)  # no everything stage: the reference's
    demo = Models(build_demo_pipeline(), "demo")
    defaults = actions.everything_defaults(demo)
    # The demo's display settings, not the recall-tuned ones its text stage proposes with.
    shown = DEMO_EVERYTHING_OUTPUT
    assert (
        defaults
        == (24, shown.pred_iou_thresh, shown.stability_score_thresh)
        != (
            24,
            DEMO_EVERYTHING.pred_iou_thresh,
            DEMO_EVERYTHING.stability_score_thresh,
        )
    )
    image, shapes = three_shapes()
    points, min_iou, min_stability = defaults
    found = actions.segment_everything(
        demo, image, None, None, points_per_side=points, min_iou=min_iou, min_stability=min_stability
    )
    best = [mask_ious(np.broadcast_to(shape, found.masks.shape), found.masks).max() for shape in shapes]
    assert min(best) > 0.9, best  # every shape is found
    # ... and not buried under parts and merges (the proposals' settings gave 81 masks, these 10).
    assert len(found) <= 4 * len(shapes), len(found)
