"""Prompt encoder + mask decoder against segment_anything's, end to end on random weights.

The reference decoder receives the batch-1 image embedding exactly as its ``Sam`` and predictor pass it
(it copies it per prompt with ``repeat_interleave``); ours shares it.
"""

from __future__ import annotations

import copy

import pytest
import torch
from segment_anything import modeling as ref

from grounded_sam.sam import fast
from grounded_sam.sam.modeling.mask_decoder import MaskDecoder
from grounded_sam.sam.modeling.prompt_encoder import PromptEncoder
from grounded_sam.sam.modeling.transformer import TwoWayTransformer
from tests.sam.builders import randomize_

# Width and heads keep SAM's ratios (C / heads = 16 in the released models, 16 here), so the same
# attention formulations are chosen as at full size.
DIM, HEADS, MLP_DIM, GRID, INPUT, IOU_HIDDEN, MASK_CHANS = 64, 4, 128, (16, 16), (64, 64), 32, 8


class Pair:
    """The reference and our prompt encoder + mask decoder, holding the same random weights."""

    def __init__(self) -> None:
        self.ref_prompt = ref.PromptEncoder(
            embed_dim=DIM, image_embedding_size=GRID, input_image_size=INPUT, mask_in_chans=MASK_CHANS
        )
        self.ref_decoder = ref.MaskDecoder(
            transformer_dim=DIM,
            transformer=ref.TwoWayTransformer(depth=2, embedding_dim=DIM, num_heads=HEADS, mlp_dim=MLP_DIM),
            iou_head_hidden_dim=IOU_HIDDEN,
        )
        randomize_(self.ref_prompt, seed=4, scale=0.3).eval()
        randomize_(self.ref_decoder, seed=5, scale=0.2).eval()
        self.prompt = PromptEncoder(DIM, GRID, INPUT, MASK_CHANS).eval()
        self.decoder = MaskDecoder(
            transformer_dim=DIM,
            transformer=TwoWayTransformer(depth=2, embedding_dim=DIM, num_heads=HEADS, mlp_dim=MLP_DIM),
            iou_head_hidden_dim=IOU_HIDDEN,
        ).eval()
        self.prompt.load_state_dict(self.ref_prompt.state_dict(), strict=True)
        self.decoder.load_state_dict(self.ref_decoder.state_dict(), strict=True)
        self.plain_decoder = copy.deepcopy(self.decoder)
        fast.accelerate(self.decoder)

    @staticmethod
    def decode(prompt, decoder, embedding, points, boxes, masks, multimask):
        with torch.no_grad():
            sparse, dense = prompt(points=points, boxes=boxes, masks=masks)
            return decoder(embedding, prompt.get_dense_pe(), sparse, dense, multimask)


@pytest.fixture(scope="module")
def pair() -> Pair:
    return Pair()


def _prompts(case: str) -> tuple:
    generator = torch.Generator().manual_seed(len(case))
    scale = torch.tensor([INPUT[1], INPUT[0]], dtype=torch.float32)

    def points(n: int, count: int) -> tuple[torch.Tensor, torch.Tensor]:
        labels = torch.randint(0, 2, (n, count), generator=generator)
        return torch.rand(n, count, 2, generator=generator) * scale, labels

    def boxes(n: int) -> torch.Tensor:
        corners = torch.rand(n, 2, 2, generator=generator) * scale
        return torch.cat([corners.amin(1), corners.amax(1)], dim=1)

    masks = torch.randn(2, 1, 4 * GRID[0], 4 * GRID[1], generator=generator) * 5
    return {
        "points": (points(3, 2), None, None),
        "one_box": (None, boxes(1), None),
        "boxes": (None, boxes(8), None),
        "points_and_boxes": (points(2, 2), boxes(2), None),
        "mask_and_points": (points(2, 1), None, masks),
    }[case]


@pytest.mark.parametrize("accelerated", [True, False], ids=["accelerated", "plain"])
@pytest.mark.parametrize("multimask", [True, False])
@pytest.mark.parametrize("case", ["points", "one_box", "boxes", "points_and_boxes", "mask_and_points"])
def test_decoder_matches_reference(pair, case, multimask, accelerated):
    decoder = pair.decoder if accelerated else pair.plain_decoder
    assert fast.is_accelerated(decoder) == accelerated
    points, boxes, masks = _prompts(case)
    embedding = torch.randn(1, DIM, *GRID, generator=torch.Generator().manual_seed(11))
    expected_masks, expected_iou = pair.decode(
        pair.ref_prompt, pair.ref_decoder, embedding, points, boxes, masks, multimask
    )
    low_res, iou = pair.decode(pair.prompt, decoder, embedding, points, boxes, masks, multimask)
    count = 3 if multimask else 1
    batch = expected_masks.shape[0]
    assert low_res.shape == (batch, count, 4 * GRID[0], 4 * GRID[1])
    assert iou.shape == (batch, count)
    torch.testing.assert_close(low_res, expected_masks, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(iou, expected_iou, atol=1e-5, rtol=1e-5)


def test_state_dict_keys_and_shapes_match_reference(pair):
    for ours, reference in ((pair.decoder, pair.ref_decoder), (pair.prompt, pair.ref_prompt)):
        assert {k: v.shape for k, v in ours.state_dict().items()} == {
            k: v.shape for k, v in reference.state_dict().items()
        }


def test_per_prompt_image_embeddings_equal_shared(pair):
    """A batch-N embedding (one copy per prompt) gives what the shared batch-1 embedding gives."""
    points, boxes, masks = _prompts("boxes")
    embedding = torch.randn(1, DIM, *GRID, generator=torch.Generator().manual_seed(12))
    shared = pair.decode(pair.prompt, pair.decoder, embedding, points, boxes, masks, True)
    copied = pair.decode(
        pair.prompt, pair.decoder, embedding.expand(8, -1, -1, -1), points, boxes, masks, True
    )
    for a, b in zip(shared, copied, strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_two_stage_decoding_of_a_subset_equals_forward(pair):
    """attend → iou_from_tokens → masks_from_tokens on kept rows gives forward's rows."""
    _, boxes, _ = _prompts("boxes")
    embedding = torch.randn(1, DIM, *GRID, generator=torch.Generator().manual_seed(13))
    with torch.no_grad():
        sparse, dense = pair.prompt(points=None, boxes=boxes, masks=None)
        pe = pair.prompt.get_dense_pe()
        expected_masks, expected_iou = pair.decoder(embedding, pe, sparse, dense, False)
        tokens, image_tokens = pair.decoder.attend(embedding, pe, sparse, dense)
        keep = torch.tensor([1, 4, 6])
        masks = pair.decoder.masks_from_tokens(tokens[keep], image_tokens[keep], GRID, False)
        iou = pair.decoder.iou_from_tokens(tokens, False)
    torch.testing.assert_close(iou, expected_iou)
    torch.testing.assert_close(masks, expected_masks[keep])


@pytest.mark.parametrize("multimask", [True, False])
def test_selected_mask_tokens_alone_give_forward_masks_into_a_given_buffer(pair, multimask):
    """The final attention of only the IoU and the selected mask tokens, and the masks of those mask tokens
    written into a slice of a larger buffer, give forward's IoUs and masks."""
    _, boxes, _ = _prompts("boxes")
    embedding = torch.randn(1, DIM, *GRID, generator=torch.Generator().manual_seed(14))
    decoder = pair.decoder
    with torch.no_grad():
        sparse, dense = pair.prompt(points=None, boxes=boxes, masks=None)
        pe = pair.prompt.get_dense_pe()
        expected_masks, expected_iou = decoder(embedding, pe, sparse, dense, multimask)
        full, image_tokens = decoder.attend(embedding, pe, sparse, dense)
        read = decoder.output_tokens(multimask)
        tokens, _ = decoder.attend(embedding, pe, sparse, dense, read)
        buffer = torch.full((len(boxes) + 2, 3, 4 * GRID[0], 4 * GRID[1]), float("nan"))
        out = buffer[1 : 1 + len(boxes), : 3 if multimask else 1]
        masks = decoder.masks_of(tokens[:, 1:], image_tokens, GRID, multimask, out=out)
    assert read == ([0, 2, 3, 4] if multimask else [0, 1])
    assert masks.data_ptr() == out.data_ptr() and masks.shape == expected_masks.shape
    torch.testing.assert_close(tokens, full[:, read])
    torch.testing.assert_close(decoder.iou_from_tokens(tokens, multimask), expected_iou)
    torch.testing.assert_close(masks, expected_masks)
    assert buffer[0].isnan().all() and buffer[-1].isnan().all()


@pytest.mark.parametrize("accelerated", [True, False], ids=["accelerated", "plain"])
def test_no_prompts_give_empty_outputs(pair, accelerated):
    embedding = torch.randn(1, DIM, *GRID)
    decoder = pair.decoder if accelerated else pair.plain_decoder
    low_res, iou = pair.decode(pair.prompt, decoder, embedding, None, torch.zeros(0, 4), None, True)
    assert low_res.shape == (0, 3, 4 * GRID[0], 4 * GRID[1])
    assert iou.shape == (0, 3)


@pytest.mark.parametrize("accelerated", [True, False], ids=["accelerated", "plain"])
def test_bad_embeddings_raise_value_error(pair, accelerated):
    decoder = pair.decoder if accelerated else pair.plain_decoder
    sparse, dense = pair.prompt(points=None, boxes=_prompts("boxes")[1], masks=None)
    pe = pair.prompt.get_dense_pe()
    with pytest.raises(ValueError, match="image_embeddings must be"):
        decoder(torch.zeros(2, DIM, *GRID), pe, sparse, dense, True)
    with pytest.raises(ValueError, match="dense_prompt_embeddings grid"):
        decoder(torch.zeros(1, DIM, 8, 8), pe, sparse, dense, True)
