"""The faster Grounding DINO paths give the unpatched transformers model's outputs."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from grounded_sam.text.gdino_speed import (
    DeformableSampler,
    FoldedTextImageAttention,
    accelerate,
    deformable_sample,
)
from grounded_sam.text.grounding_dino import GroundingDinoDetector
from tests.text.gdino_builders import tiny_model, tiny_processor

transformers_gdino = pytest.importorskip("transformers.models.grounding_dino.modeling_grounding_dino")


def reference_sample(value, shapes, locations, weights) -> torch.Tensor:
    """transformers' pure-PyTorch multi-scale deformable attention (grid_sample per level)."""
    shape_tensor = torch.tensor(shapes)
    starts = torch.cat([torch.zeros(1, dtype=torch.long), shape_tensor.prod(1).cumsum(0)[:-1]])
    return transformers_gdino.MultiScaleDeformableAttention()(
        value, shape_tensor, shapes, starts, locations, weights, 64
    )


@pytest.mark.parametrize(
    ("batch", "heads", "shapes", "points"),
    [(1, 2, [(6, 9), (3, 5), (2, 3), (1, 2)], 4), (2, 3, [(5, 4)], 1), (3, 1, [(1, 1), (7, 2)], 3)],
)
def test_sampling_equals_grid_sample(batch, heads, shapes, points) -> None:
    torch.manual_seed(0)
    queries, depth = 11, 5
    value = torch.randn(batch, sum(h * w for h, w in shapes), heads, depth)
    # well outside [0, 1] too, where some or all bilinear neighbours are zero padding
    locations = torch.rand(batch, queries, heads, len(shapes), points, 2) * 1.8 - 0.4
    weights = torch.rand(batch, queries, heads, len(shapes), points)
    expected = reference_sample(value, shapes, locations, weights)
    got = deformable_sample(value, shapes, locations, weights)
    assert got.shape == (batch, queries, heads * depth)
    torch.testing.assert_close(got, expected, rtol=0, atol=2e-6)


def test_sampling_on_pixel_centres_edges_and_far_outside() -> None:
    shapes = [(3, 4), (2, 2)]
    value = torch.arange(16 * 2, dtype=torch.float32).view(1, 16, 1, 2) + 1
    xs = torch.tensor([0.0, 0.125, 0.375, 0.5, 1.0, -0.125, 1.125, -5.0, 7.0, 0.999])
    grid = torch.stack(torch.meshgrid(xs, xs, indexing="ij"), -1).reshape(1, -1, 1, 1, 1, 2)
    locations = grid.expand(1, -1, 1, 2, 1, 2).contiguous()
    weights = torch.ones(1, locations.shape[1], 1, 2, 1)
    expected = reference_sample(value, shapes, locations, weights)
    torch.testing.assert_close(
        deformable_sample(value, shapes, locations, weights), expected, rtol=0, atol=1e-5
    )
    far = (locations < -1).any(-1).all(-1) | (locations > 2).any(-1).all(-1)
    assert (expected[far[..., 0, 0]] == 0).all()


def test_sampling_rejects_shapes_that_do_not_cover_the_values() -> None:
    value = torch.zeros(1, 10, 1, 2)
    with pytest.raises(ValueError, match="level shapes"):
        deformable_sample(value, [(3, 3)], torch.zeros(1, 1, 1, 1, 1, 2), torch.ones(1, 1, 1, 1, 1))


@pytest.mark.parametrize("masked", [False, True])
def test_folded_fusion_attention_equals_the_original(masked) -> None:
    torch.manual_seed(0)
    original = tiny_model().model.encoder.layers[0].fusion_layer.attn
    folded = FoldedTextImageAttention(original)
    assert folded.vision_proj is original.vision_proj and folded.out_text_proj is original.out_text_proj
    vision, text = torch.randn(2, 30, 32) * 3, torch.randn(2, 7, 32) * 3
    masks = {}
    if masked:
        masks["vision_attention_mask"] = torch.arange(30) >= torch.tensor([[30], [22]])
        masks["text_attention_mask"] = torch.arange(7) >= torch.tensor([[7], [4]])
    expected, got = original(vision, text, **masks), folded(vision, text, **masks)
    for side in range(2):
        for part in range(2):
            assert got[side][part].shape == expected[side][part].shape
            torch.testing.assert_close(got[side][part], expected[side][part], rtol=1e-5, atol=1e-5)


def test_accelerated_model_equals_the_unpatched_model() -> None:
    reference = tiny_model()
    model = copy.deepcopy(reference)
    keys = list(model.state_dict())
    assert accelerate(model) == 4  # one encoder layer (sampler + fusion), two decoder layers
    assert accelerate(model) == 0
    assert list(model.state_dict()) == keys
    assert sum(isinstance(m, DeformableSampler) for m in model.modules()) == 3
    assert sum(isinstance(m, FoldedTextImageAttention) for m in model.modules()) == 1
    assert not any(isinstance(m, DeformableSampler | FoldedTextImageAttention) for m in reference.modules())

    torch.manual_seed(0)
    pixels = torch.randn(2, 3, 64, 96)
    pixel_mask = torch.ones(2, 64, 96, dtype=torch.long)
    pixel_mask[1, :, 80:] = 0  # the second image is padded on the right
    ids = torch.tensor([[101, 200, 1012, 209, 210, 1012, 102]] * 2)
    inputs = dict(
        pixel_values=pixels, pixel_mask=pixel_mask, input_ids=ids, attention_mask=torch.ones_like(ids)
    )
    with torch.inference_mode():
        expected, got = reference(**inputs), model(**inputs)
    finite = expected.logits.isfinite()  # text positions past the prompt are -inf in both
    assert finite.sum() == 2 * 20 * 7 and torch.equal(got.logits.isfinite(), finite)
    torch.testing.assert_close(got.logits[finite], expected.logits[finite], rtol=0, atol=1e-4)
    torch.testing.assert_close(got.pred_boxes, expected.pred_boxes, rtol=0, atol=1e-5)


def test_detector_accelerates_its_model_with_unchanged_detections(tmp_path) -> None:
    processor = tiny_processor(tmp_path)
    options = dict(device="cpu", box_threshold=0.0, text_threshold=0.0, nms_threshold=None, max_boxes=1000)
    plain = GroundingDinoDetector(tiny_model(), processor, accelerate=False, **options)
    fast = GroundingDinoDetector(tiny_model(), processor, **options)
    assert not any(isinstance(m, DeformableSampler) for m in plain.model.modules())
    assert any(isinstance(m, DeformableSampler) for m in fast.model.modules())
    image = np.random.default_rng(0).integers(0, 256, (48, 72, 3), dtype=np.uint8)
    expected = plain.detect(image, ["cat", "traffic light"])
    got = fast.detect(image, ["cat", "traffic light"])
    assert len(expected) > 0 and np.array_equal(got.phrase_ids, expected.phrase_ids)
    np.testing.assert_allclose(got.scores, expected.scores, rtol=0, atol=1e-5)
    np.testing.assert_allclose(got.boxes, expected.boxes, rtol=0, atol=1e-3)  # pixels
