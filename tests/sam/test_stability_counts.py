"""Counts of upsampled logits above thresholds, settled from the low-res logits: always exact."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from segment_anything.utils import amg

from grounded_sam.sam.everything.mask_ops import upsample_logits
from grounded_sam.sam.everything.stability_counts import (
    AxisFootprint,
    UpsampleFootprint,
    count_above,
    stability_from_counts,
)

SIZES = [
    ((256, 256), (256, 256)),  # square: one resize
    ((192, 256), (192, 256)),  # cropped padding
    ((256, 171), (375, 250)),  # second resize up
    ((128, 256), (75, 150)),  # second resize down
    ((256, 256), (9, 9)),  # tiny original
]


def smooth_logits(count: int, size: int, scale: float, seed: int) -> torch.Tensor:
    """(count, size, size) smooth random logits with a ramp, so thresholds cut real contours."""
    generator = torch.Generator().manual_seed(seed)
    noise = torch.randn(count, 1, size + 6, size + 6, generator=generator)
    blobs = F.avg_pool2d(noise, 7, stride=1)[:, 0] * 3
    ramp = torch.linspace(-2, 2, size)[None, :, None]
    return (blobs + ramp) * scale


def direct_counts(logits: torch.Tensor, thresholds: list[float]) -> np.ndarray:
    return np.stack([(logits > t).sum((1, 2)).numpy() for t in thresholds], axis=1)


@pytest.mark.parametrize(("input_size", "original_size"), SIZES)
@pytest.mark.parametrize("scale", [1e-3, 0.5, 4.0, 40.0])
def test_counts_equal_full_resolution_counts(input_size, original_size, scale) -> None:
    low = smooth_logits(5, 64, scale, seed=int(scale * 1000) + input_size[1])
    logits = upsample_logits(low[:, None], 256, input_size, original_size)[:, 0]
    thresholds = [1.0, -1.0, 0.0, 0.3]
    footprint = UpsampleFootprint.of((64, 64), 256, input_size, original_size)
    counts = count_above(low, logits, thresholds, footprint)
    np.testing.assert_array_equal(counts, direct_counts(logits, thresholds))


def test_flat_nan_and_threshold_valued_logits() -> None:
    low = torch.zeros(4, 64, 64)
    low[1] = 1.0  # exactly the threshold: not above it
    low[2] = 5.0  # settled above everywhere
    low[3, 10:20, 30:40] = float("nan")  # NaN is never above: left to the full-resolution count
    logits = upsample_logits(low[:, None], 256, (256, 256), (256, 256))[:, 0]
    footprint = UpsampleFootprint.of((64, 64), 256, (256, 256), (256, 256))
    counts = count_above(low, logits, [1.0, -1.0], footprint)
    np.testing.assert_array_equal(counts, direct_counts(logits, [1.0, -1.0]))
    assert counts[2].tolist() == [256 * 256, 256 * 256] and counts[1, 0] == 0
    assert counts[3, 1] < 256 * 256  # the NaN pixels are not counted


def test_stability_scores_match_reference() -> None:
    low = smooth_logits(6, 64, 4.0, seed=3)
    low[0] = -5.0  # empty at both cuts: 0 / 0
    logits = upsample_logits(low[:, None], 256, (256, 256), (256, 256))[:, 0]
    footprint = UpsampleFootprint.of((64, 64), 256, (256, 256), (256, 256))
    ours = stability_from_counts(count_above(low, logits, (1.0, -1.0), footprint))
    reference = amg.calculate_stability_score(logits, 0.0, 1.0).numpy()
    assert ours.dtype == np.float32
    np.testing.assert_array_equal(ours[1:], reference[1:])
    assert np.isnan(ours[0]) and np.isnan(reference[0])
    # Thresholds round to float32 as torch's comparison does.
    edge = torch.full((1, 64, 64), np.float32(0.3))
    edge_logits = upsample_logits(edge[:, None], 256, (256, 256), (256, 256))[:, 0]
    assert stability_from_counts(count_above(edge, edge_logits, (0.3, -0.3), footprint))[0] == 0.0


def test_axis_footprint_groups_cover_the_axis() -> None:
    axis = AxisFootprint.of(64, 256, 171, 250)
    assert axis.edges[0] == 0 and axis.edges[-1] == 250 and np.all(np.diff(axis.edges) > 0)
    assert axis.starts.min() >= 0 and axis.starts.max() + axis.width <= 64
    assert axis.lengths.sum() == 250 and len(axis.starts) == len(axis.lengths)
