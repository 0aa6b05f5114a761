"""The faster Grounding DINO paths give the unpatched transformers model's outputs."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from grounded_sam.text.gdino_deformable import DeformableAttention, EncoderDeformableLayer
from grounded_sam.text.gdino_mlp import FusedMLP
from grounded_sam.text.gdino_speed import FoldedTextImageAttention, accelerate
from grounded_sam.text.grounding_dino import GroundingDinoDetector
from tests.text.gdino_builders import tiny_model, tiny_processor

pytest.importorskip("transformers")


def swin_mlp_count(model: torch.nn.Module) -> int:
    return sum(type(m).__name__ == "SwinMLP" for m in model.modules())


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
            torch.testing.assert_close(got[side][part], expected[side][part], rtol=1e-4, atol=1e-4)


def test_accelerated_model_equals_the_unpatched_model() -> None:
    reference = tiny_model()
    model = copy.deepcopy(reference)
    keys = list(model.state_dict())
    # one encoder layer (layer, its deformable attention, fusion), two decoder deformable attentions,
    # the MLPs of the four Swin blocks where transformers has SwinMLP (5.x)
    swin_mlps = swin_mlp_count(reference)
    assert accelerate(model) == 5 + swin_mlps
    assert accelerate(model) == 0
    assert list(model.state_dict()) == keys
    kinds = (DeformableAttention, EncoderDeformableLayer, FoldedTextImageAttention, FusedMLP)
    assert [sum(isinstance(m, kind) for m in model.modules()) for kind in kinds] == [3, 1, 1, swin_mlps]
    assert not any(isinstance(m, kinds) for m in reference.modules())
    assert not any(m.training for m in model.modules())  # the replacements keep eval mode

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
    assert not any(isinstance(m, DeformableAttention) for m in plain.model.modules())
    assert any(isinstance(m, DeformableAttention) for m in fast.model.modules())
    image = np.random.default_rng(0).integers(0, 256, (48, 72, 3), dtype=np.uint8)
    expected = plain.detect(image, ["cat", "traffic light"])
    got = fast.detect(image, ["cat", "traffic light"])
    assert len(expected) > 0 and np.array_equal(got.phrase_ids, expected.phrase_ids)
    np.testing.assert_allclose(got.scores, expected.scores, rtol=0, atol=1e-5)
    np.testing.assert_allclose(got.boxes, expected.boxes, rtol=0, atol=1e-3)  # pixels


@pytest.mark.slow
def test_full_size_architecture_equals_the_unpatched_model() -> None:
    """The tiny checkpoint's architecture (Swin-T, BERT-base, 900 queries) with random weights."""
    from transformers import GroundingDinoConfig, GroundingDinoForObjectDetection

    torch.manual_seed(0)
    reference = GroundingDinoForObjectDetection(GroundingDinoConfig()).eval()
    model = copy.deepcopy(reference)
    # 6 encoder layers (attention, layer, fusion), 6 decoder attentions, 12 Swin MLPs (transformers 5)
    assert accelerate(model) == 6 * 3 + 6 + swin_mlp_count(reference)
    ids = torch.tensor([[101, 2417, 4418, 1012, 2630, 2732, 1012, 102]])
    pixels = torch.randn(1, 3, 320, 416, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        expected, got = (
            reference(pixel_values=pixels, input_ids=ids),
            model(pixel_values=pixels, input_ids=ids),
        )
    for name in ("encoder_last_hidden_state_vision", "encoder_last_hidden_state_text"):
        torch.testing.assert_close(getattr(got, name), getattr(expected, name), rtol=0, atol=1e-4)
    # Random weights give some proposals identical embeddings, hence tied scores, and transformers' top-k
    # orders ties arbitrarily: the same proposals must be chosen, but their slots may differ (this input
    # keeps them in the same slots here, so the decoder's outputs are compared too).
    chosen = [torch.sort(out.init_reference_points[0].flatten()).values for out in (expected, got)]
    assert torch.equal(*chosen)
    torch.testing.assert_close(got.encoder_logits, expected.encoder_logits, rtol=0, atol=1e-4)
    if torch.equal(got.init_reference_points, expected.init_reference_points):
        finite = expected.logits.isfinite()
        torch.testing.assert_close(got.logits[finite], expected.logits[finite], rtol=0, atol=1e-4)
        torch.testing.assert_close(got.pred_boxes, expected.pred_boxes, rtol=0, atol=1e-5)
