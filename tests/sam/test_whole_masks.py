"""Masks settled by their extremes or upsampled whole: counts, masks and boxes equal the full upsampling."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from grounded_sam.sam import budgets
from grounded_sam.sam.everything.mask_ops import CompactMask, mask_box, upsample_logits
from grounded_sam.sam.everything.tiled_logits import TiledCuts, TileGrid
from grounded_sam.sam.everything.tiled_mask import TiledMask
from grounded_sam.sam.everything.triage import ragged_masks, uniform_levels, upsampled_whole
from grounded_sam.sam.everything.whole_masks import WholeUpsampler
from tests.sam.test_tiled_logits import CUTS, SIZES, smooth_logits


def checkerboard(size: int, scale: float) -> torch.Tensor:
    """(size, size) logits of alternating sign (random-weight SAM's masks look like this), |x| <= scale."""
    signs = (torch.arange(size)[:, None] + torch.arange(size)[None, :]) % 2 * 2 - 1
    return signs * scale * torch.linspace(0.5, 1.0, size)[None, :]


@pytest.mark.parametrize(("low_side", "square", "input_size", "original_size"), SIZES)
def test_whole_upsampler_equals_upsample_logits_bit_for_bit(
    monkeypatch, low_side, square, input_size, original_size
) -> None:
    monkeypatch.setattr(budgets, "WHOLE_MASK_BYTES", 1)  # one mask at a time: buffers reused
    low = smooth_logits(3, low_side, 2.0, seed=11)
    whole = WholeUpsampler(square, input_size, original_size)
    expected = upsample_logits(low[:, None], square, input_size, original_size)[:, 0]
    assert whole.batch() == 1
    for i in range(3):
        assert torch.equal(whole.logits(low[i : i + 1])[0], expected[i])
    wanted = np.array([[True, False, True], [False, False, False], [True, True, True]])
    counts, boxes, masks = whole.cut(low, CUTS, wanted)
    for i in range(3):
        for k, threshold in enumerate(CUTS):
            count = int((expected[i] > threshold).sum())
            assert counts[i, k] == (count if wanted[i, k] or k == 2 else -1)
        binary = (expected[i] > 0).numpy()
        np.testing.assert_array_equal(masks[i].to_mask(), binary)
        assert tuple(boxes[i]) == (mask_box(binary) or (0, 0, 0, 0))


def test_extremes_settle_uniform_masks_without_tiles() -> None:
    low = torch.stack(
        [
            torch.full((64, 64), 5.0),
            torch.full((64, 64), -5.0),
            smooth_logits(1, 64, 0.4, 1)[0].clamp(-0.9, 0.9),
        ]
    )
    levels = uniform_levels(low, CUTS)
    assert levels[:2].tolist() == [[1, 1, 1], [0, 0, 0]]
    assert levels[2, :2].tolist() == [0, 1] and levels[2, 2] == -1
    grid = TileGrid.of((64, 64), 256, (256, 171), (375, 250))
    cuts = TiledCuts.of(grid, low, CUTS)
    full = upsample_logits(low[:, None], 256, (256, 171), (375, 250))[:, 0]
    assert set(cuts.tiles[0].tolist()) == {2}  # only the varied mask has tiles
    expected = np.stack([(full > t).sum((1, 2)).numpy() for t in CUTS], axis=1)
    np.testing.assert_array_equal(cuts.counts[:2], expected[:2])
    masks = cuts.masks(grid)
    np.testing.assert_array_equal(masks[0].to_mask(), np.ones((375, 250), bool))
    assert masks[0].box == (0, 0, 249, 374) and masks[0].area == 375 * 250
    assert masks[1].area == 0 and masks[1].box == (0, 0, 0, 0) and not masks[1].to_mask().any()
    assert masks[2].box == mask_box(masks[2].to_mask())


@pytest.mark.parametrize(("low_side", "square", "input_size", "original_size"), SIZES[:3] + SIZES[5:6])
def test_ragged_masks_take_the_whole_path_among_tiled_and_uniform(
    low_side, square, input_size, original_size
) -> None:
    """Random-weight ViT-B's three masks per point: all above, a tiny checkerboard (ragged at 0, settled at
    ±1), all below; and a smooth mask between them that keeps its tiles."""
    low = torch.stack(
        [
            torch.full((low_side, low_side), 1.4e-3),
            checkerboard(low_side, 3.5e-4),
            smooth_logits(1, low_side, 40.0, seed=3)[0],
            torch.full((low_side, low_side), -5e-4),
            checkerboard(low_side, 30.0),  # ragged at every cut
        ]
    )
    assert ragged_masks(low, 0.0).tolist() == [False, True, False, False, True]
    full = upsample_logits(low[:, None], square, input_size, original_size)[:, 0]
    grid = TileGrid.of((low_side, low_side), square, input_size, original_size)
    cuts = TiledCuts.of(grid, low, CUTS)
    assert sorted(cuts.whole) == [1, 4] and set(cuts.tiles[0].tolist()) == {2}
    expected = np.stack([(full > t).sum((1, 2)).numpy() for t in CUTS], axis=1)
    np.testing.assert_array_equal(np.delete(cuts.counts, 2, 0), np.delete(expected, 2, 0))
    assert (np.abs(cuts.counts[2] - expected[2]) <= 2).all()  # tiles: up to float rounding
    for i, mask in enumerate(cuts.masks(grid)):
        assert isinstance(mask, CompactMask if i in (1, 4) else TiledMask)
        binary = (full[i] > 0).numpy()
        if i != 2:
            np.testing.assert_array_equal(mask.to_mask(), binary)
        assert mask.box == tuple(cuts.boxes[i]) == (mask_box(mask.to_mask()) or (0, 0, 0, 0))
        assert mask.area == cuts.counts[i, -1]


@pytest.mark.parametrize(("low_side", "square", "input_size", "original_size"), SIZES)
def test_tile_values_of_any_subset_equal_the_full_upsampling(low_side, square, input_size, original_size):
    """All tiles (one weight pattern pair has most: no sorting) and the border tiles alone (pairs mixed)."""
    low = smooth_logits(2, low_side, 20.0, seed=6)
    full = upsample_logits(low[:, None], square, input_size, original_size)[:, 0]
    grid = TileGrid.of((low_side, low_side), square, input_size, original_size)
    (rows, cols), (tile_y, tile_x) = grid.shape, grid.tile
    padded = torch.full((2, rows * tile_y, cols * tile_x), float("nan"))
    padded[:, : original_size[0], : original_size[1]] = full
    expected = padded.view(2, rows, tile_y, cols, tile_x).transpose(2, 3).flatten(3)  # (2, Gy, Gx, Ty * Tx)
    everything = torch.meshgrid(*(torch.arange(n) for n in (2, rows, cols)), indexing="ij")
    border = (
        (everything[1] == 0)
        | (everything[2] == 0)
        | (everything[1] == rows - 1)
        | (everything[2] == cols - 1)
    )
    for chosen in (torch.ones_like(border), border):
        tiles = tuple(t[chosen] for t in everything)
        values = grid.values(low, tiles)
        torch.testing.assert_close(values, expected[tiles], atol=1e-5 * 20 * 4, rtol=0, equal_nan=True)


def test_masks_of_small_tiles_are_upsampled_whole() -> None:
    """A 256 x 256 image from 128-px logits (the demo pipeline's scenes): tiles of 2 x 2 pixels cost more
    than the bilinear pass, so every mask that its extremes do not settle is upsampled whole, exactly."""
    low = smooth_logits(3, 128, 4.0, seed=9)
    low[1] = -2.0
    grid = TileGrid.of((128, 128), 256, (256, 256), (256, 256))
    assert grid.tile == (2, 2) and upsampled_whole(low, 0.0, grid.tile).all()
    assert not upsampled_whole(low[:1], 0.0, (4, 4)).any()  # smooth: tiles pay from 4 x 4 pixels on
    cuts = TiledCuts.of(grid, low, CUTS)
    full = upsample_logits(low[:, None], 256, (256, 256), (256, 256))[:, 0]
    assert sorted(cuts.whole) == [0, 2] and len(cuts.tiles[0]) == 0
    expected = np.stack([(full > t).sum((1, 2)).numpy() for t in CUTS], axis=1)
    np.testing.assert_array_equal(cuts.counts, expected)
    for i, mask in enumerate(cuts.masks(grid)):
        np.testing.assert_array_equal(mask.to_mask(), (full[i] > 0).numpy())
