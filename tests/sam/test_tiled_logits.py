"""Upsampling by tiles: values, counts, masks and boxes equal the full upsampling up to float rounding."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from segment_anything.utils import amg

from grounded_sam.sam.everything.mask_ops import CompactMask, mask_box, upsample_logits
from grounded_sam.sam.everything.tiled_logits import (
    DENSE_FRACTION,
    TiledCuts,
    TileGrid,
    stability_from_counts,
)
from grounded_sam.sam.everything.tiled_mask import TiledMask

# (low-res side, encoder side, input size, original size)
SIZES = [
    (64, 256, (256, 256), (256, 256)),  # square: one resize
    (64, 256, (192, 256), (192, 256)),  # cropped padding
    (64, 256, (256, 171), (375, 250)),  # second resize up
    (64, 256, (128, 256), (75, 150)),  # second resize down
    (64, 256, (256, 256), (9, 9)),  # tiny original
    (128, 256, (192, 256), (768, 1024)),  # the demo model on a 768 x 1024 image: tiles of 8 x 8
    (64, 256, (192, 256), (1500, 2000)),  # a scale that is not a whole number
]
CUTS = (1.0, -1.0, 0.0)


def smooth_logits(count: int, size: int, scale: float, seed: int) -> torch.Tensor:
    """(count, size, size) smooth random logits with a ramp, so thresholds cut real contours."""
    generator = torch.Generator().manual_seed(seed)
    noise = torch.randn(count, 1, size + 6, size + 6, generator=generator)
    blobs = F.avg_pool2d(noise, 7, stride=1)[:, 0] * 3
    ramp = torch.linspace(-2, 2, size)[None, :, None]
    return (blobs + ramp) * scale


def near(full: torch.Tensor, threshold: float, low: torch.Tensor) -> torch.Tensor:
    """Pixels of (N, H, W) ``full`` within float rounding of ``threshold`` (relative to the logits' size)."""
    tolerance = 1e-5 * low.abs().flatten(1).amax(1).clamp(min=1e-3)
    return (full - threshold).abs() <= tolerance[:, None, None]


@pytest.mark.parametrize(("low_side", "square", "input_size", "original_size"), SIZES)
@pytest.mark.parametrize("scale", [1e-3, 0.5, 40.0])
def test_counts_and_masks_equal_the_full_upsampling(low_side, square, input_size, original_size, scale):
    low = smooth_logits(5, low_side, scale, seed=int(scale * 1000) + original_size[1])
    low[0] = -3 * scale  # nothing in doubt, nothing inside
    full = upsample_logits(low[:, None], square, input_size, original_size)[:, 0]
    grid = TileGrid.of((low_side, low_side), square, input_size, original_size)
    cuts = TiledCuts.of(grid, low, CUTS)
    counts, masks = cuts.counts, cuts.masks(grid)
    in_doubt = np.bincount(cuts.tiles[0], minlength=len(low))
    tiled = [i for i in range(len(low)) if i not in cuts.whole]
    assert 0 in tiled and in_doubt[0] == 0  # nothing in doubt
    assert all(in_doubt[i] > 0 for i in tiled[1:])
    assert in_doubt.sum() <= DENSE_FRACTION * len(low) * np.prod(grid.shape)  # most tiles settled
    for k, threshold in enumerate(CUTS):
        expected = (full > threshold).sum((1, 2)).numpy()
        assert (np.abs(counts[:, k] - expected) <= near(full, threshold, low).sum((1, 2)).numpy()).all()
    for i in range(len(low)):
        tiled = masks[i]
        mask, expected = tiled.to_mask(), (full[i] > CUTS[-1]).numpy()
        assert mask.shape == original_size
        differ = mask != expected
        assert not differ[~near(full[i : i + 1], CUTS[-1], low[i : i + 1])[0].numpy()].any()
        assert tiled.area == counts[i, -1] == mask.sum()
        assert tiled.box == (mask_box(mask) or (0, 0, 0, 0))


def test_tile_values_equal_the_full_upsampling_up_to_rounding() -> None:
    low = smooth_logits(3, 128, 20.0, seed=5)
    full = upsample_logits(low[:, None], 256, (192, 256), (768, 1024))[:, 0]
    grid = TileGrid.of((128, 128), 256, (192, 256), (768, 1024))
    assert (grid.rows.tile, grid.cols.tile, grid.shape) == (8, 8, (96, 128))
    everything = torch.meshgrid(*(torch.arange(n) for n in (3, *grid.shape)), indexing="ij")
    values = grid.values(low, tuple(t.flatten() for t in everything))
    tiled = values.view(3, 96, 128, 8, 8).transpose(2, 3).reshape(3, 768, 1024)
    assert (tiled - full).abs().max() <= 1e-6 * low.abs().max()


def test_nan_logits_are_upsampled_exactly_and_never_inside() -> None:
    low = smooth_logits(3, 64, 4.0, seed=2)
    low[1, 10:13, 30:33] = float("nan")
    full = upsample_logits(low[:, None], 256, (256, 171), (375, 250))[:, 0]
    grid = TileGrid.of((64, 64), 256, (256, 171), (375, 250))
    cuts = TiledCuts.of(grid, low, CUTS)
    mask = cuts.masks(grid)[1].to_mask()
    np.testing.assert_array_equal(mask, (full[1] > 0).numpy())
    assert cuts.counts[1, 1] == (full[1] > -1).sum() < 375 * 250


def test_ragged_masks_are_upsampled_whole_as_the_reference_does() -> None:
    noise = torch.randn(3, 64, 64, generator=torch.Generator().manual_seed(8))  # contours everywhere
    noise[0] = smooth_logits(1, 64, 40.0, seed=8)[0]  # sharp contours: tiled
    full = upsample_logits(noise[:, None], 256, (256, 171), (375, 250))[:, 0]
    grid = TileGrid.of((64, 64), 256, (256, 171), (375, 250))
    cuts = TiledCuts.of(grid, noise, CUTS)
    assert sorted(cuts.whole) == [1, 2]
    expected = np.stack([(full > t).sum((1, 2)).numpy() for t in CUTS], axis=1)
    np.testing.assert_array_equal(cuts.counts[1:], expected[1:])
    for i in (1, 2):
        mask = cuts.masks(grid)[i]
        np.testing.assert_array_equal(mask.to_mask(), (full[i] > 0).numpy())
        assert mask.box == mask_box(mask.to_mask()) == tuple(cuts.boxes[i])


def test_stability_scores_match_the_reference() -> None:
    low = smooth_logits(6, 64, 4.0, seed=3)
    low[0] = -5.0  # empty at both cuts: 0 / 0
    full = upsample_logits(low[:, None], 256, (256, 256), (256, 256))[:, 0]
    grid = TileGrid.of((64, 64), 256, (256, 256), (256, 256))
    ours = stability_from_counts(TiledCuts.of(grid, low, (1.0, -1.0)).counts)
    reference = amg.calculate_stability_score(full, 0.0, 1.0).numpy()
    assert ours.dtype == np.float32
    np.testing.assert_allclose(ours[1:], reference[1:], atol=1e-4)
    assert np.isnan(ours[0]) and np.isnan(reference[0])
    # Flat logits a little off the thresholds are settled everywhere, and counted whole.
    flat = torch.full((1, 64, 64), 0.3 + 1e-4)
    assert TiledCuts.of(grid, flat, (0.3, -0.3)).counts[0].tolist() == [256 * 256, 256 * 256]


def test_tiled_masks_move_and_encode_as_compact_masks() -> None:
    low = smooth_logits(2, 64, 40.0, seed=4)  # sharp contours: tiled, not upsampled whole
    grid = TileGrid.of((64, 64), 256, (256, 171), (375, 250))
    cuts = TiledCuts.of(grid, low, CUTS)
    assert not cuts.whole
    for tiled in cuts.masks(grid):
        assert isinstance(tiled, TiledMask)
        compact = CompactMask.from_mask(tiled.to_mask())
        assert (tiled.box, tiled.area) == (compact.box, compact.area)
        np.testing.assert_array_equal(tiled.rle_counts(), compact.rle_counts())
        moved, moved_compact = tiled.shifted(7, 3, (400, 300)), compact.shifted(7, 3, (400, 300))
        assert moved.box == moved_compact.box
        np.testing.assert_array_equal(moved.to_mask(), moved_compact.to_mask())
        np.testing.assert_array_equal(moved.rle_counts(), moved_compact.rle_counts())
        with pytest.raises(ValueError, match="leaves a frame"):
            tiled.shifted(-1000, 0, (400, 300))
