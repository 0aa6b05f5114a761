"""Parity of `hf_sam_to_official` on a tiny random `transformers.SamModel` against segment-anything."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from grounded_sam.sam.convert_hf import hf_sam_to_official, is_hf_sam_state_dict, official_sam_to_hf
from grounded_sam.sam.modeling.config import SamConfig, ViTConfig
from tests.sam.builders import reference_sam

transformers = pytest.importorskip("transformers")
sam_ref = pytest.importorskip("segment_anything.modeling")

IMAGE_SIZE = 128
PATCH = 16
ATOL = 1e-4


def _tiny_hf_config() -> transformers.SamConfig:
    vision = {
        "hidden_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "mlp_dim": 128,
        "image_size": IMAGE_SIZE,
        "patch_size": PATCH,
        "window_size": 5,  # does not divide the 8x8 grid, so window padding is exercised too
        "global_attn_indexes": [1],
        "output_channels": 32,
        "num_pos_feats": 16,  # = prompt hidden size / 2
    }
    prompt = {"hidden_size": 32, "image_size": IMAGE_SIZE, "patch_size": PATCH, "mask_input_channels": 16}
    decoder = {
        "hidden_size": 32,
        "mlp_dim": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "iou_head_hidden_dim": 24,
        "iou_head_depth": 4,  # two hidden layers: exercises the MLP index shift beyond one layer
    }
    return transformers.SamConfig(
        vision_config=vision, prompt_encoder_config=prompt, mask_decoder_config=decoder
    )


def _reference_from_config(config: transformers.SamConfig) -> nn.Module:
    """segment-anything `Sam` with the architecture numbers of an HF `SamConfig` (HF's defaults for
    qkv bias, absolute positions, LayerNorm eps and attention downsampling equal the reference's)."""
    vision, prompt, decoder = config.vision_config, config.prompt_encoder_config, config.mask_decoder_config
    assert vision.output_channels == prompt.hidden_size == decoder.hidden_size
    encoder = ViTConfig(
        embed_dim=vision.hidden_size,
        depth=vision.num_hidden_layers,
        num_heads=vision.num_attention_heads,
        global_attn_indexes=tuple(vision.global_attn_indexes),
        window_size=vision.window_size,
        patch_size=vision.patch_size,
        mlp_ratio=vision.mlp_dim / vision.hidden_size,
        use_rel_pos=vision.use_rel_pos,
    )
    return reference_sam(
        SamConfig(
            encoder=encoder,
            image_size=vision.image_size,
            prompt_embed_dim=prompt.hidden_size,
            mask_in_chans=prompt.mask_input_channels,
            decoder_depth=decoder.num_hidden_layers,
            decoder_heads=decoder.num_attention_heads,
            decoder_mlp_dim=decoder.mlp_dim,
            num_multimask_outputs=decoder.num_multimask_outputs,
            iou_head_depth=decoder.iou_head_depth,
            iou_head_hidden_dim=decoder.iou_head_hidden_dim,
        )
    )


@pytest.fixture(scope="module")
def models() -> tuple[nn.Module, nn.Module]:
    """A randomised tiny HF `SamModel` and the reference `Sam` strictly loaded with its converted weights."""
    torch.manual_seed(0)
    config = _tiny_hf_config()
    hf = transformers.SamModel(config).eval()
    with torch.no_grad():
        for name, param in hf.named_parameters():
            # Every tensor random (rel-pos tables, pos_embed and the Fourier matrix included); norm scales
            # around 1 so activations stay in a range where the comparison is meaningful.
            base = 1.0 if "norm" in name and name.endswith("weight") else 0.0
            param.copy_(base + 0.3 * torch.randn_like(param))
    reference = _reference_from_config(config)
    reference.load_state_dict(hf_sam_to_official(hf.state_dict()), strict=True)
    return hf, reference


@pytest.fixture(scope="module")
def embeddings(models: tuple[nn.Module, nn.Module]) -> tuple[torch.Tensor, torch.Tensor]:
    """Image embeddings (1, 32, 8, 8) of both models for the same already-normalised input."""
    hf, reference = models
    pixels = torch.randn(1, 3, IMAGE_SIZE, IMAGE_SIZE, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        return hf.get_image_embeddings(pixels), reference.image_encoder(pixels)


def _reference_decode(
    reference: nn.Module,
    embedding: torch.Tensor,
    points: tuple[torch.Tensor, torch.Tensor] | None,
    boxes: torch.Tensor | None,
    multimask: bool,
    masks: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Prompt encoder + mask decoder called like `SamPredictor.predict_torch` does (one image, B prompts)."""
    sparse, dense = reference.prompt_encoder(points=points, boxes=boxes, masks=masks)
    return reference.mask_decoder(
        image_embeddings=embedding,
        image_pe=reference.prompt_encoder.get_dense_pe(),
        sparse_prompt_embeddings=sparse,
        dense_prompt_embeddings=dense,
        multimask_output=multimask,
    )


def test_image_embeddings_match(embeddings: tuple[torch.Tensor, torch.Tensor]) -> None:
    hf_embedding, ref_embedding = embeddings
    assert hf_embedding.shape == ref_embedding.shape == (1, 32, 8, 8)
    assert ref_embedding.std() > 0.1  # not a degenerate all-zero output
    torch.testing.assert_close(hf_embedding, ref_embedding, atol=ATOL, rtol=0)


def test_full_forward_from_pixels_matches(models: tuple[nn.Module, nn.Module]) -> None:
    hf, reference = models
    pixels = torch.randn(1, 3, IMAGE_SIZE, IMAGE_SIZE, generator=torch.Generator().manual_seed(2))
    coords = torch.tensor([[[30.0, 70.0]]])  # (B=1 prompt, N=1 point, xy) in input pixels
    labels = torch.tensor([[1]])
    with torch.no_grad():
        out = hf(pixel_values=pixels, input_points=coords[None], input_labels=labels[None])
        ref_masks, ref_iou = _reference_decode(
            reference, reference.image_encoder(pixels), (coords, labels), None, multimask=True
        )
    assert out.pred_masks.shape == (1, 1, 3, 32, 32)
    torch.testing.assert_close(out.pred_masks[0], ref_masks, atol=ATOL, rtol=0)
    torch.testing.assert_close(out.iou_scores[0], ref_iou, atol=ATOL, rtol=0)


# (points xy per prompt, labels per prompt, boxes xyxy per prompt); the prompt batch is HF's
# "point_batch_size" axis and the reference's batch axis.
PROMPTS = {
    "one_point": ([[[30.0, 70.0]]], [[1]], None),
    "two_points_pos_neg": ([[[30.0, 70.0], [100.0, 12.5]]], [[1, 0]], None),
    "point_batch": ([[[5.0, 5.0]], [[120.0, 64.0]]], [[1], [1]], None),
    "one_box": (None, None, [[10.0, 20.0, 90.0, 110.0]]),
    "box_batch": (None, None, [[10.0, 20.0, 90.0, 110.0], [0.0, 0.0, 127.0, 127.0]]),
    "point_and_box": ([[[50.0, 60.0]]], [[1]], [[10.0, 20.0, 90.0, 110.0]]),
}


@pytest.mark.parametrize("multimask", [True, False])
@pytest.mark.parametrize("prompt", sorted(PROMPTS))
def test_decoder_outputs_match(
    models: tuple[nn.Module, nn.Module],
    embeddings: tuple[torch.Tensor, torch.Tensor],
    prompt: str,
    multimask: bool,
) -> None:
    hf, reference = models
    hf_embedding, ref_embedding = embeddings
    points, labels, boxes = PROMPTS[prompt]
    coords = torch.tensor(points) if points is not None else None  # (B, N, 2)
    label_t = torch.tensor(labels) if labels is not None else None  # (B, N)
    box_t = torch.tensor(boxes) if boxes is not None else None  # (B, 4)
    with torch.no_grad():
        out = hf(
            image_embeddings=hf_embedding,
            input_points=coords[None] if coords is not None else None,
            input_labels=label_t[None] if label_t is not None else None,
            input_boxes=box_t[None] if box_t is not None else None,
            multimask_output=multimask,
        )
        ref_points = (coords, label_t) if coords is not None else None
        ref_masks, ref_iou = _reference_decode(reference, ref_embedding, ref_points, box_t, multimask)
    num_prompts, num_masks = len(points or boxes), 3 if multimask else 1
    assert ref_masks.shape == (num_prompts, num_masks, 32, 32)
    assert out.pred_masks.shape == (1, num_prompts, num_masks, 32, 32)
    assert ref_masks.std() > 0.1
    torch.testing.assert_close(out.pred_masks[0], ref_masks, atol=ATOL, rtol=0)
    torch.testing.assert_close(out.iou_scores[0], ref_iou, atol=ATOL, rtol=0)


def test_mask_prompt_matches(
    models: tuple[nn.Module, nn.Module], embeddings: tuple[torch.Tensor, torch.Tensor]
) -> None:
    hf, reference = models
    hf_embedding, ref_embedding = embeddings
    coords, labels = torch.tensor([[[64.0, 64.0]]]), torch.tensor([[1]])
    mask = torch.randn(1, 1, 32, 32, generator=torch.Generator().manual_seed(3))  # (B, 1, 4h, 4w) logits
    with torch.no_grad():
        out = hf(
            image_embeddings=hf_embedding,
            input_points=coords[None],
            input_labels=labels[None],
            input_masks=mask,
        )
        ref_masks, ref_iou = _reference_decode(
            reference, ref_embedding, (coords, labels), None, multimask=True, masks=mask
        )
    torch.testing.assert_close(out.pred_masks[0], ref_masks, atol=ATOL, rtol=0)
    torch.testing.assert_close(out.iou_scores[0], ref_iou, atol=ATOL, rtol=0)


def test_round_trip_restores_hf_state_dict(models: tuple[nn.Module, nn.Module]) -> None:
    hf, reference = models
    original = hf.state_dict()
    back = official_sam_to_hf(hf_sam_to_official(original))
    assert back.keys() == original.keys()
    assert all(torch.equal(back[key], original[key]) for key in original)
    # The official state dict converts to one HF's `SamModel` loads strictly.
    fresh = transformers.SamModel(_tiny_hf_config())
    fresh.load_state_dict(official_sam_to_hf(reference.state_dict()), strict=True)
    assert torch.equal(
        fresh.mask_decoder.iou_prediction_head.proj_out.weight,
        reference.mask_decoder.iou_prediction_head.layers[3].weight,
    )


def test_mlp_heads_are_renumbered(models: tuple[nn.Module, nn.Module]) -> None:
    hf, _ = models
    converted = hf_sam_to_official(hf.state_dict())
    head = hf.mask_decoder.iou_prediction_head
    expected = [head.proj_in.weight, head.layers[0].weight, head.layers[1].weight, head.proj_out.weight]
    for index, weight in enumerate(expected):
        assert torch.equal(converted[f"mask_decoder.iou_prediction_head.layers.{index}.weight"], weight)
    assert "mask_decoder.iou_prediction_head.layers.4.weight" not in converted


@pytest.mark.parametrize("prefix", ["sam.", "model.", "model.sam."])
def test_wrapper_prefixes_are_stripped(models: tuple[nn.Module, nn.Module], prefix: str) -> None:
    hf, _ = models
    plain = hf_sam_to_official(hf.state_dict())
    prefixed = {prefix + key: value for key, value in hf.state_dict().items()}
    assert is_hf_sam_state_dict(prefixed)
    assert hf_sam_to_official(prefixed).keys() == plain.keys()


def test_tied_positional_matrix(models: tuple[nn.Module, nn.Module]) -> None:
    hf, _ = models
    target = "prompt_encoder.pe_layer.positional_encoding_gaussian_matrix"
    state = dict(hf.state_dict())
    only_tied = {k: v for k, v in state.items() if k != "shared_image_embedding.positional_embedding"}
    assert torch.equal(hf_sam_to_official(only_tied)[target], hf.shared_image_embedding.positional_embedding)
    state["prompt_encoder.shared_embedding.positional_embedding"] = torch.zeros(2, 16)
    with pytest.raises(ValueError, match="differ"):
        hf_sam_to_official(state)


@pytest.mark.parametrize("extra", ["vision_encoder.layers.0.attn.extra_scale", "text_encoder.weight"])
def test_unknown_key_raises_naming_it(models: tuple[nn.Module, nn.Module], extra: str) -> None:
    hf, _ = models
    state = {**hf.state_dict(), extra: torch.zeros(1)}
    with pytest.raises(ValueError, match=extra.replace(".", r"\.")):
        hf_sam_to_official(state)
    with pytest.raises(ValueError, match="not part of"):
        official_sam_to_hf({"image_encoder.blocks.0.unknown.weight": torch.zeros(1)})


def test_missing_key_is_reported_by_strict_loading(models: tuple[nn.Module, nn.Module]) -> None:
    hf, _ = models
    state = {k: v for k, v in hf.state_dict().items() if k != "vision_encoder.layers.1.attn.rel_pos_h"}
    converted = hf_sam_to_official(state)
    with pytest.raises(RuntimeError, match=r"image_encoder\.blocks\.1\.attn\.rel_pos_h"):
        _reference_from_config(_tiny_hf_config()).load_state_dict(converted, strict=True)


def test_detects_format(models: tuple[nn.Module, nn.Module]) -> None:
    hf, reference = models
    assert is_hf_sam_state_dict(hf.state_dict())
    assert not is_hf_sam_state_dict(reference.state_dict())
    assert not is_hf_sam_state_dict({})
    decoder_only = {k: v for k, v in hf.state_dict().items() if k.startswith("mask_decoder.")}
    assert is_hf_sam_state_dict(decoder_only)
    assert not is_hf_sam_state_dict({k: v for k, v in reference.state_dict().items() if "mask_decoder" in k})
