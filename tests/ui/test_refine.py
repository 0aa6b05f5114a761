"""Refine clicks re-decode one instance from its box, points and previous logits, on the cached embedding."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from grounded_sam.ops.boxes import masks_to_boxes
from grounded_sam.ui.refine import EmbeddingCache, InstanceEdit, refine_instance, replace_instance
from tests.pipelines import SCENE, scripted_pipeline
from tests.ui.results import scene_result


@pytest.fixture
def pipeline():
    torch.manual_seed(0)
    return scripted_pipeline()


def test_refine_matches_the_predictor_chain_and_never_re_encodes(pipeline) -> None:
    result = pipeline.predict(SCENE.image, ". ".join(SCENE.labels))
    predictor, encoder = pipeline.predictor, pipeline.predictor.model.image_encoder
    assert encoder.calls == 1
    x1, y1, x2, y2 = result.boxes[1]
    edit = InstanceEdit(box=result.boxes[1].copy()).with_point((x1 + x2) / 2, (y1 + y2) / 2, True)

    refined, edit = refine_instance(predictor, result, 1, edit)
    edit = edit.with_point(x1 + 1, y1 + 1, False)
    refined, edit = refine_instance(predictor, refined, 1, edit)

    assert encoder.calls == 1
    # The same chain by hand: box-only logits, then box + first point, then box + both points.
    _, _, logits = predictor.predict(box=result.boxes[1], multimask_output=False)
    points = np.array([[(x1 + x2) / 2, (y1 + y2) / 2], [x1 + 1, y1 + 1]], dtype=np.float32)
    _, _, logits = predictor.predict(
        points[:1], np.array([1]), result.boxes[1], logits, multimask_output=False
    )
    masks, scores, logits = predictor.predict(points, np.array([1, 0]), result.boxes[1], logits, False)
    np.testing.assert_array_equal(refined.masks[1], masks[0])
    np.testing.assert_allclose(edit.logits, logits, atol=1e-5)
    assert refined.mask_scores[1] == pytest.approx(float(scores[0]), abs=1e-6)
    np.testing.assert_array_equal(edit.box, result.boxes[1])  # the prompt box stays the detector's
    assert len(edit.points) == 2 and edit.points[1][2] == 0
    # Other instances are untouched.
    for i in (0, 2):
        np.testing.assert_array_equal(refined.masks[i], result.masks[i])
        np.testing.assert_array_equal(refined.boxes[i], result.boxes[i])
    with pytest.raises(IndexError, match="does not exist"):
        refine_instance(predictor, result, 99, edit)


def test_replace_instance_sets_the_tight_box_unless_the_mask_is_empty() -> None:
    result = scene_result()
    mask = np.zeros(result.image_size, dtype=bool)
    mask[10:20, 30:45] = True
    changed = replace_instance(result, 0, mask, 0.25)
    np.testing.assert_array_equal(changed.boxes[0], [30, 10, 45, 20])
    np.testing.assert_array_equal(changed.boxes[0], masks_to_boxes(mask[None])[0])
    assert changed.mask_scores[0] == pytest.approx(0.25)
    emptied = replace_instance(result, 0, np.zeros_like(mask), 0.0)
    np.testing.assert_array_equal(emptied.boxes[0], result.boxes[0])
    np.testing.assert_array_equal(result.masks[0], SCENE.masks[0])  # the input is not modified


def test_embedding_cache_keeps_embeddings_per_image_and_evicts_the_oldest(pipeline) -> None:
    predictor, encoder = pipeline.predictor, pipeline.predictor.model.image_encoder
    cache = EmbeddingCache(capacity=2)
    other = np.ascontiguousarray(SCENE.image[::-1])

    predictor.set_image(SCENE.image)
    cache.remember("scene", predictor)
    kept = cache.predictor_for("scene", SCENE.image, predictor)
    predictor.set_image(other)  # the pipeline moves on to another image...
    assert cache.predictor_for("scene", SCENE.image, predictor) is kept  # ...the cached embedding does not
    assert kept.embedding is not predictor.embedding
    assert encoder.calls == 2

    cache.predictor_for("other", other, predictor)  # a miss embeds once
    assert encoder.calls == 3
    cache.predictor_for("other", other, predictor)
    assert encoder.calls == 3
    cache.predictor_for("third", SCENE.image, predictor)
    assert "scene" not in cache and "other" in cache and "third" in cache
    with pytest.raises(ValueError, match="capacity"):
        EmbeddingCache(0)
