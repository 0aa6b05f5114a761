"""A feed-forward block in bands of rows equals the whole block."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from grounded_sam.text.gdino_mlp import feed_forward_in_bands


@pytest.mark.parametrize("band_rows", [1, 5, 12, 13, 1000])
def test_bands_equal_the_whole_block(band_rows) -> None:
    torch.manual_seed(0)
    fc1, fc2 = nn.Linear(6, 24), nn.Linear(24, 6)
    tokens = torch.randn(2, 13, 6)
    with torch.inference_mode():
        expected = fc2(torch.relu(fc1(tokens)))
        got = feed_forward_in_bands(tokens, fc1, torch.relu, fc2, band_bytes=band_rows * 24 * 4)
    assert got.shape == (2, 13, 6)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-6)
