"""Full-resolution candidates: the Upsampler's scores and masks equal the direct computation (up to pixels
whose logit is within float rounding of a threshold)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from segment_anything.utils import amg

from grounded_sam.sam.everything import EverythingConfig
from grounded_sam.sam.everything.full_resolution import Upsampler
from grounded_sam.sam.everything.mask_ops import upsample_logits
from grounded_sam.sam.predictor import ImageEmbedding
from tests.sam.builders import random_sam
from tests.sam.test_tiled_logits import smooth_logits


@pytest.fixture(scope="module")
def model():
    return random_sam(seed=2)


def candidates(low: int) -> torch.Tensor:
    """(1, 6, low, low) logits: smooth contours at three scales, empty, full, and NaN-spotted masks."""
    logits = torch.cat([smooth_logits(3, low, scale, seed=7) for scale in (0.3, 2.0, 9.0)])[:6]
    logits[3] = -4.0  # no tile in doubt: never upsampled
    logits[4] = 4.0
    logits[5, 3:6, 3:6] = float("nan")
    return logits[None]


@pytest.mark.parametrize("original_size", [None, (50, 37), (300, 200)])  # None: the model's own input size
@pytest.mark.parametrize("stability_thresh", [0.0, 0.5])
def test_stable_masks_equal_the_direct_computation(model, original_size, stability_thresh) -> None:
    side = model.image_size
    features = torch.zeros(1, model.prompt_encoder.embed_dim, *model.prompt_encoder.image_embedding_size)
    low = 4 * features.shape[-1]
    size = original_size or (side, side)
    scale = side / max(size)
    input_size = (int(size[0] * scale + 0.5), int(size[1] * scale + 0.5))
    embedding = ImageEmbedding(features, size, input_size)
    config = EverythingConfig(stability_score_thresh=stability_thresh)
    upsampler = Upsampler(model, embedding, config)
    low_res = candidates(low)
    selected = (torch.zeros(6, dtype=torch.long), torch.arange(6))
    found = [(i, s, m.to_mask()) for i, s, m in upsampler.stable_masks(low_res, selected)]

    full = upsample_logits(low_res[0][:, None], side, input_size, size)[:, 0]
    expected = amg.calculate_stability_score(full, model.mask_threshold, 1.0).numpy()
    kept = [i for i in range(6) if stability_thresh == 0 or expected[i] >= stability_thresh]
    assert [i for i, _, _ in found] == kept and len(kept) > 0
    for i, stability, mask in found:
        np.testing.assert_allclose(stability, expected[i], atol=1e-4)
        differ = mask != (full[i] > model.mask_threshold).numpy()
        assert np.abs(full[i].numpy()[differ] - model.mask_threshold).max(initial=0) <= 1e-5
