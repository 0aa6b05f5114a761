"""TwoWayTransformer and its Attention against segment_anything's, on random weights."""

from __future__ import annotations

import copy

import pytest
import torch
from segment_anything import modeling as ref
from segment_anything.modeling.transformer import Attention as RefAttention

from grounded_sam.sam import fast
from grounded_sam.sam.fast.attention import FastAttention
from grounded_sam.sam.modeling.attention import Attention
from grounded_sam.sam.modeling.transformer import TwoWayTransformer
from tests.sam.builders import randomize_

DIM, HEADS, MLP_DIM, GRID, TOKENS = 64, 4, 96, (16, 16), 7
PATHS = ("_attend_few_keys", "_attend_many_keys", "_attend_projected")


@pytest.fixture(scope="module")
def transformers() -> tuple[ref.TwoWayTransformer, TwoWayTransformer]:
    reference = ref.TwoWayTransformer(depth=2, embedding_dim=DIM, num_heads=HEADS, mlp_dim=MLP_DIM)
    randomize_(reference, seed=2, scale=0.3).eval()
    ours = TwoWayTransformer(depth=2, embedding_dim=DIM, num_heads=HEADS, mlp_dim=MLP_DIM).eval()
    ours.load_state_dict(reference.state_dict(), strict=True)
    return reference, fast.accelerate(ours)


@pytest.fixture(scope="module")
def attentions() -> tuple[RefAttention, FastAttention]:
    # Float64: the formulations are exact algebra, so they must agree to rounding of the reference itself.
    reference = randomize_(RefAttention(DIM, HEADS, downsample_rate=2), seed=3, scale=0.3).double()
    ours = Attention(DIM, HEADS, downsample_rate=2).double()
    ours.load_state_dict(reference.state_dict(), strict=True)
    return reference, fast.accelerate(ours)


def _inputs(prompts: int, image_batch: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(prompts)
    image = torch.randn(image_batch, DIM, *GRID, generator=generator)
    pe = torch.randn(1, DIM, *GRID, generator=generator)
    tokens = torch.randn(prompts, TOKENS, DIM, generator=generator)
    return image, pe, tokens


def test_state_dict_keys_and_shapes_match_reference(transformers):
    reference, ours = transformers
    assert {k: v.shape for k, v in ours.state_dict().items()} == {
        k: v.shape for k, v in reference.state_dict().items()
    }


@pytest.mark.parametrize("accelerated", [True, False], ids=["accelerated", "plain"])
@pytest.mark.parametrize("prompts", [1, 5])
@pytest.mark.parametrize("shared_image", [True, False])
def test_transformer_matches_reference(transformers, prompts, shared_image, accelerated):
    reference, ours = transformers
    if not accelerated:
        ours = fast.plain(copy.deepcopy(ours))
        assert type(ours) is TwoWayTransformer
    image, pe, tokens = _inputs(prompts, 1 if shared_image else prompts)
    with torch.no_grad():
        # The reference needs one image copy per prompt, as its mask decoder makes with repeat_interleave.
        expected_queries, expected_keys = reference(image.expand(prompts, -1, -1, -1), pe, tokens)
        queries, keys = ours(image, pe, tokens)
    assert queries.shape == (prompts, TOKENS, DIM)
    assert keys.shape == (prompts, GRID[0] * GRID[1], DIM)
    torch.testing.assert_close(queries, expected_queries, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(keys, expected_keys, atol=1e-5, rtol=1e-5)


def test_shared_image_is_never_projected_per_prompt(transformers):
    """With a batch-1 image and N prompts, no linear layer sees N copies of the image tokens."""
    _, ours = transformers
    image, pe, tokens = _inputs(6, 1)
    seen: list[tuple[int, ...]] = []
    hooks = [
        module.register_forward_pre_hook(lambda _, args: seen.append(tuple(args[0].shape)))
        for module in ours.modules()
        if isinstance(module, torch.nn.Linear)
    ]
    try:
        with torch.no_grad():
            ours(image, pe, tokens)
    finally:
        for hook in hooks:
            hook.remove()
    image_inputs = [shape for shape in seen if shape[-2] == GRID[0] * GRID[1]]
    assert image_inputs, "the image tokens should be projected once"
    assert all(shape[0] == 1 for shape in image_inputs), image_inputs


# (query batch, query length, key batch, key length, expected formulation)
ATTENTION_CASES = {
    "image_to_tokens": (3, 200, 3, 5, "_attend_few_keys"),
    "shared_image_to_tokens": (1, 200, 3, 5, "_attend_few_keys"),
    "tokens_to_image": (3, 5, 3, 200, "_attend_many_keys"),
    "few_tokens_to_shared_image": (2, 2, 1, 200, "_attend_many_keys"),
    "many_tokens_to_shared_image": (3, 20, 1, 200, "_attend_projected"),
    "self_attention": (3, 6, 3, 6, "_attend_projected"),
}


@pytest.mark.parametrize("case", list(ATTENTION_CASES))
@pytest.mark.parametrize("with_residual", [False, True])
def test_attention_formulations_match_reference(attentions, monkeypatch, case, with_residual):
    reference, ours = attentions
    batch_q, length_q, batch_k, length_k, expected_path = ATTENTION_CASES[case]
    generator = torch.Generator().manual_seed(length_q + length_k)
    q, k, v, residual = (
        torch.randn(shape, generator=generator, dtype=torch.float64)
        for shape in [
            (batch_q, length_q, DIM),
            (batch_k, length_k, DIM),
            (batch_k, length_k, DIM),
            (1, length_q, DIM),
        ]
    )
    calls: list[str] = []
    for name in PATHS:
        method = getattr(ours, name)
        monkeypatch.setattr(ours, name, lambda *args, _n=name, _m=method: calls.append(_n) or _m(*args))
    batch = max(batch_q, batch_k)
    with torch.no_grad():
        expected = reference(q.expand(batch, -1, -1), k.expand(batch, -1, -1), v.expand(batch, -1, -1))
        out = ours(q, k, v, residual=residual if with_residual else None)
    assert calls == [expected_path]
    if with_residual:
        expected = expected + residual
    torch.testing.assert_close(out, expected, atol=1e-10, rtol=1e-10)


@pytest.mark.parametrize("case", list(ATTENTION_CASES))
def test_plain_attention_matches_reference(attentions, case):
    reference, ours = attentions
    plain = fast.plain(copy.deepcopy(ours))
    assert type(plain) is Attention
    batch_q, length_q, batch_k, length_k, _ = ATTENTION_CASES[case]
    generator = torch.Generator().manual_seed(length_q * length_k)
    q = torch.randn(batch_q, length_q, DIM, generator=generator, dtype=torch.float64)
    k, v = (torch.randn(batch_k, length_k, DIM, generator=generator, dtype=torch.float64) for _ in range(2))
    batch = max(batch_q, batch_k)
    with torch.no_grad():
        expected = reference(q.expand(batch, -1, -1), k.expand(batch, -1, -1), v.expand(batch, -1, -1))
        torch.testing.assert_close(plain(q, k, v), expected, atol=1e-10, rtol=1e-10)


def test_bad_shapes_raise_value_error(transformers):
    _, ours = transformers
    image, pe, tokens = _inputs(3, 2)
    with pytest.raises(ValueError, match="batch must be 1 or the prompt batch 3"):
        ours(image, pe, tokens)
    with pytest.raises(ValueError, match="image_pe must be"):
        ours(image[:1], pe[..., :8], tokens)
    with pytest.raises(ValueError, match="must divide"):
        Attention(DIM, num_heads=5)


def test_offset_keys_equal_attention_over_the_summed_keys(attentions):
    _, ours = attentions
    generator = torch.Generator().manual_seed(5)
    q, keys, offset, residual = (
        torch.randn(shape, generator=generator, dtype=torch.float64)
        for shape in ((3, 2, DIM), (3, 40, DIM), (1, 40, DIM), (3, 2, DIM))
    )
    with torch.no_grad():
        expected = ours(q, keys + offset, keys, residual=residual)
        got = ours.attend_offset_keys(q, keys, offset, residual)
    torch.testing.assert_close(got, expected, atol=1e-10, rtol=1e-10)


@pytest.mark.parametrize("grad", [False, True])
def test_shared_projections_give_the_reference_result(transformers, grad):
    """Image tokens made with ``project=True`` (as for many prompts) decode as the reference does."""
    reference, ours = transformers
    image, pe, tokens = _inputs(5, 1)
    with torch.no_grad():
        expected_queries, expected_keys = reference(image.expand(5, -1, -1, -1), pe, tokens)
    with torch.set_grad_enabled(grad):
        shared = ours.image_tokens(image, pe, project=True)
        state = ours.attend_blocks(shared, tokens)
        queries = ours.final_attention(state)
    assert shared.projections is not None and state.final_pe is not None
    assert queries.requires_grad == grad
    torch.testing.assert_close(queries.detach(), expected_queries, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(state.keys.detach(), expected_keys, atol=1e-5, rtol=1e-5)


def test_projections_are_made_only_for_a_shared_image(transformers):
    _, ours = transformers
    image, pe, _ = _inputs(3, 3)
    assert ours.image_tokens(image, pe, project=True).projections is None
    assert ours.image_tokens(image[:1], pe).projections is None
    with pytest.raises(ValueError, match="have batch 1"):
        ours.layers[0].cross_attn_image_to_token.project_shared(image.flatten(2).transpose(1, 2), "query")


def test_shared_scores_equal_scores_of_the_summed_inputs(attentions):
    """Scores against shared projected queries or keys are those of the summed raw inputs (float64)."""
    _, ours = attentions
    generator = torch.Generator().manual_seed(6)
    tokens, image, offset = (
        torch.randn(shape, generator=generator, dtype=torch.float64)
        for shape in ((3, 5, DIM), (3, 40, DIM), (1, 40, DIM))
    )
    with torch.no_grad():
        rows = ours.key_rows(tokens, tokens)
        expected = ours.row_scores(rows, image + offset)
        projected = ours.project_shared(offset, "query")
        assert projected.shape == (HEADS, ours.head_dim, 40)
        torch.testing.assert_close(ours.row_scores(rows, image, offset=projected), expected)
        torch.testing.assert_close(ours.shared_query_scores(rows, projected), ours.row_scores(rows, offset))
        # Key side: the softmax of the scores of raw keys plus the offset, up to a constant per query.
        residual = torch.zeros_like(tokens)
        summed = ours(tokens, image + offset, image, residual=residual)
        shared_keys = ours.project_shared(offset, "key")
        got = ours.attend_offset_keys(tokens, image, offset, residual, shared_keys)
    torch.testing.assert_close(got, summed, atol=1e-10, rtol=1e-10)


def test_final_attention_of_some_tokens_equals_those_of_the_full_pass(transformers):
    _, ours = transformers
    image, pe, tokens = _inputs(4, 1)
    with torch.no_grad():
        queries, _ = ours(image, pe, tokens)
        state = ours.run_blocks(image, pe, tokens)
        first = ours.final_attention(state, slice(0, 1))
        kept = ours.final_attention(state.take(torch.tensor([3, 1])))
    torch.testing.assert_close(first, queries[:, :1], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(kept, queries[[3, 1]], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
def test_in_place_updates_leave_inputs_alone_and_match_autograd(transformers, layout):
    """Without autograd the second block writes into the first block's image tokens; never into the
    caller's embedding (a channels-last one flattens to a view of itself), and the result is the same."""
    _, ours = transformers
    image, pe, tokens = _inputs(3, 3)
    if layout == "channels_last":
        image = image.contiguous(memory_format=torch.channels_last)
    before = image.clone()
    with torch.inference_mode():
        queries, keys = ours(image, pe, tokens)
    assert torch.equal(image, before)
    expected_queries, expected_keys = ours(image, pe, tokens)  # autograd on: nothing in place
    assert expected_keys.requires_grad
    torch.testing.assert_close(queries, expected_queries.detach(), atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(keys, expected_keys.detach(), atol=1e-6, rtol=1e-6)
