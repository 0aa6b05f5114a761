"""PromptEncoder against segment_anything's, on random weights, with a non-square input frame."""

from __future__ import annotations

import pytest
import torch
from segment_anything import modeling as ref

from grounded_sam.sam.modeling.prompt_encoder import PromptEncoder
from tests.sam.builders import randomize_

EMBED, GRID, INPUT, MASK_CHANS = 32, (12, 16), (48, 64), 8  # (h, w): a wide frame catches x/y swaps


@pytest.fixture(scope="module")
def encoders() -> tuple[ref.PromptEncoder, PromptEncoder]:
    reference = ref.PromptEncoder(
        embed_dim=EMBED, image_embedding_size=GRID, input_image_size=INPUT, mask_in_chans=MASK_CHANS
    )
    randomize_(reference, seed=1, scale=0.5).eval()
    ours = PromptEncoder(EMBED, GRID, INPUT, MASK_CHANS).eval()
    ours.load_state_dict(reference.state_dict(), strict=True)
    return reference, ours


def _points(batch: int, count: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(batch * 10 + count)
    coords = torch.rand(batch, count, 2, generator=generator) * torch.tensor([INPUT[1], INPUT[0]])
    labels = torch.randint(-1, 2, (batch, count), generator=generator)
    labels[0, :3] = torch.tensor([1, 0, -1])[:count]  # every label kind appears
    return coords, labels


def _boxes(batch: int) -> torch.Tensor:
    corners = torch.rand(batch, 2, 2, generator=torch.Generator().manual_seed(batch)) * torch.tensor(
        [INPUT[1], INPUT[0]]
    )
    return torch.cat([corners.amin(1), corners.amax(1)], dim=1)


def _masks(batch: int) -> torch.Tensor:
    return torch.randn(batch, 1, 4 * GRID[0], 4 * GRID[1], generator=torch.Generator().manual_seed(7))


def test_state_dict_keys_and_shapes_match_reference(encoders):
    reference, ours = encoders
    assert {k: v.shape for k, v in ours.state_dict().items()} == {
        k: v.shape for k, v in reference.state_dict().items()
    }


PROMPTS = {
    "points": lambda: (_points(3, 4), None, None),
    "single_point": lambda: (_points(1, 1), None, None),
    "boxes": lambda: (None, _boxes(5), None),
    "points_and_boxes": lambda: (_points(2, 3), _boxes(2), None),
    "mask_and_points": lambda: (_points(2, 2), None, _masks(2)),
    "mask_only": lambda: (None, None, _masks(3)),
    "nothing": lambda: (None, None, None),
}


@pytest.mark.parametrize("case", list(PROMPTS))
def test_embeddings_match_reference(encoders, case):
    reference, ours = encoders
    points, boxes, masks = PROMPTS[case]()
    with torch.no_grad():
        expected_sparse, expected_dense = reference(points=points, boxes=boxes, masks=masks)
        sparse, dense = ours(points=points, boxes=boxes, masks=masks)
    assert sparse.shape == expected_sparse.shape
    torch.testing.assert_close(sparse, expected_sparse, atol=1e-5, rtol=1e-5)
    if masks is None:
        # One learned vector: returned once as a (1, C, h, w) view, not copied per prompt.
        assert dense.shape == (1, EMBED, *GRID)
        assert dense.stride()[2:] == (0, 0)
    torch.testing.assert_close(dense.expand_as(expected_dense), expected_dense, atol=1e-5, rtol=1e-5)


def test_dense_pe_matches_reference_and_is_cached_in_eval(encoders):
    reference, ours = encoders
    expected = reference.get_dense_pe()
    first = ours.get_dense_pe()
    assert first.shape == (1, EMBED, *GRID)
    torch.testing.assert_close(first, expected, atol=1e-5, rtol=1e-5)
    assert ours.get_dense_pe() is first


def test_dense_pe_cache_follows_new_weights():
    encoder = PromptEncoder(EMBED, GRID, INPUT, MASK_CHANS).eval()
    before = encoder.get_dense_pe()
    state = encoder.state_dict()
    state["pe_layer.positional_encoding_gaussian_matrix"] = torch.randn(2, EMBED // 2)
    encoder.load_state_dict(state)
    after = encoder.get_dense_pe()
    assert not torch.allclose(before, after)
    reference = ref.PromptEncoder(EMBED, GRID, INPUT, MASK_CHANS)
    reference.load_state_dict(state)
    torch.testing.assert_close(after, reference.get_dense_pe(), atol=1e-5, rtol=1e-5)


def test_training_mode_does_not_cache():
    encoder = PromptEncoder(EMBED, GRID, INPUT, MASK_CHANS).train()
    assert encoder.get_dense_pe() is not encoder.get_dense_pe()


def test_mask_input_size():
    assert PromptEncoder(EMBED, GRID, INPUT, MASK_CHANS).mask_input_size == (48, 64)


@pytest.mark.parametrize(
    ("points", "boxes", "masks", "message"),
    [
        (_points(2, 3), _boxes(3), None, "share the batch size"),
        (None, torch.zeros(2, 5), None, r"boxes must be \(B, 4\)"),
        ((torch.zeros(2, 3, 2), torch.zeros(2, 4)), None, None, "labels"),
        (None, None, torch.zeros(1, 1, 16, 16), r"masks must be \(B, 1, 48, 64\)"),
    ],
)
def test_bad_prompts_raise_value_error(encoders, points, boxes, masks, message):
    with pytest.raises(ValueError, match=message):
        encoders[1](points=points, boxes=boxes, masks=masks)
