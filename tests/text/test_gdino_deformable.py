"""Deformable attention on embedding_bag equals transformers' grid_sample route."""

from __future__ import annotations

import pytest
import torch

from grounded_sam.text.gdino_deformable import (
    DeformableAttention,
    EncoderDeformableLayer,
    deformable_sample,
    sampling_locations,
)
from tests.text.gdino_builders import tiny_model

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


def test_sampling_gradients_equal_grid_samples() -> None:
    torch.manual_seed(0)
    shapes = [(5, 7), (3, 4)]
    inputs = [
        torch.randn(2, 47, 2, 3),
        torch.rand(2, 6, 2, 2, 3, 2) * 1.4 - 0.2,
        torch.rand(2, 6, 2, 2, 3),
    ]
    grads = []
    for sample in (reference_sample, deformable_sample):
        leaves = [tensor.clone().requires_grad_(True) for tensor in inputs]
        value, locations, weights = leaves
        (sample(value, shapes, locations, weights) * torch.linspace(-1, 1, 6)).sum().backward()
        grads.append([leaf.grad for leaf in leaves])
    for expected, got in zip(*grads, strict=True):
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


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


def capture_inputs(module: torch.nn.Module, run) -> tuple[tuple, dict]:
    """The positional and keyword arguments of ``module``'s first call during ``run()``."""
    seen = []
    handle = module.register_forward_pre_hook(
        lambda m, args, kwargs: seen.append((args, kwargs)), with_kwargs=True
    )
    try:
        run()
    finally:
        handle.remove()
    return seen[0]


@pytest.fixture(scope="module")
def model_and_inputs():
    model = tiny_model()
    torch.manual_seed(1)
    pixel_mask = torch.ones(2, 64, 96, dtype=torch.long)
    pixel_mask[1, 40:] = 0  # the second image is padded at the bottom
    ids = torch.tensor([[101, 200, 1012, 209, 210, 1012, 102]] * 2)
    inputs = dict(pixel_values=torch.randn(2, 3, 64, 96), pixel_mask=pixel_mask, input_ids=ids)
    return model, inputs


def deformable_attention(model, where: str, decoder_layer: int):
    """The first encoder layer's deformable self-attention, or a decoder layer's cross-attention."""
    if where == "encoder":
        return model.model.encoder.layers[0].deformable_layer.self_attn
    return model.model.decoder.layers[decoder_layer].encoder_attn


@pytest.mark.parametrize("where", ["encoder", "decoder"])
def test_sampling_locations_equal_transformers(model_and_inputs, where) -> None:
    """Centre reference points in the encoder, boxes in the decoder; transformers' formulas inline."""
    model, inputs = model_and_inputs
    attention = deformable_attention(model, where, decoder_layer=1)
    with torch.inference_mode():
        _, kwargs = capture_inputs(attention, lambda: model(**inputs))
        queries = kwargs["hidden_states"] + kwargs["position_embeddings"]
        offsets = attention.sampling_offsets(queries)
        batch, count, _ = queries.shape
        heads, levels, points = attention.n_heads, attention.n_levels, attention.n_points
        raw = offsets.view(batch, count, heads, levels, points, 2)
        reference = kwargs["reference_points"]
        if reference.shape[-1] == 2:
            normaliser = kwargs["spatial_shapes"].flip(-1)
            expected = reference[:, :, None, :, None, :] + raw / normaliser[None, None, None, :, None, :]
        else:
            expected = (
                reference[:, :, None, :, None, :2] + raw / points * reference[:, :, None, :, None, 2:] * 0.5
            )
        got = sampling_locations(offsets, reference, kwargs["spatial_shapes_list"], heads)
    assert reference.shape[-1] == (2 if where == "encoder" else 4)
    assert torch.equal(got, expected)


@pytest.mark.parametrize("where", ["encoder", "decoder"])
def test_deformable_attention_equals_the_original(model_and_inputs, where) -> None:
    model, inputs = model_and_inputs
    original = deformable_attention(model, where, decoder_layer=0)
    fast = DeformableAttention(original)
    assert fast.value_proj is original.value_proj and fast.sampling_offsets is original.sampling_offsets
    with torch.inference_mode():
        args, kwargs = capture_inputs(original, lambda: model(**inputs))
        expected, got = original(*args, **kwargs), fast(*args, **kwargs)
    assert kwargs["attention_mask"] is not None and not kwargs["attention_mask"].all()
    torch.testing.assert_close(got[0], expected[0], rtol=0, atol=2e-6)
    assert torch.equal(got[1], expected[1])


@pytest.mark.parametrize("band_bytes", [7 * 64 * 4, 2**24])  # bands of 7 rows of 64 floats; one band
def test_encoder_layer_in_bands_equals_the_original(model_and_inputs, band_bytes) -> None:
    model, inputs = model_and_inputs
    original = model.model.encoder.layers[0].deformable_layer
    fast = EncoderDeformableLayer(original, band_bytes=band_bytes)
    assert fast.fc1 is original.fc1 and fast.self_attn is original.self_attn
    with torch.inference_mode():
        args, kwargs = capture_inputs(original, lambda: model(**inputs))
        expected, got = original(*args, **kwargs), fast(*args, **kwargs)
    assert original.fc1.out_features == 64 and kwargs["hidden_states"].shape[1] > 7
    torch.testing.assert_close(got[0], expected[0], rtol=0, atol=1e-5)
    torch.testing.assert_close(got[1], expected[1], rtol=0, atol=0)
    # with gradients on, the same block runs unbanded and stays differentiable
    hidden = kwargs["hidden_states"].clone().requires_grad_(True)
    fast(*args, **{**kwargs, "hidden_states": hidden})[0].sum().backward()
    assert hidden.grad is not None and hidden.grad.abs().sum() > 0
