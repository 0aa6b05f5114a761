import numpy as np
import pytest

from grounded_sam.train.prompt_sampling import (
    PAD_LABEL,
    correction_clicks,
    jitter_boxes,
    sample_foreground_points,
)


def _disc_masks(count: int, size: int = 48) -> np.ndarray:
    ys, xs = np.mgrid[:size, :size]
    centres = np.linspace(10, size - 10, count)
    return np.stack([(ys - c) ** 2 + (xs - size - 5 + c) ** 2 < 49 for c in centres])


def test_jitter_boxes_stay_inside_the_image_and_are_reproducible():
    rng = np.random.default_rng(0)
    boxes = np.array([[0, 0, 40, 30], [50, 60, 64, 64], [10, 10, 11, 11]], dtype=np.float32)
    noisy = jitter_boxes(boxes, rng, (64, 64), noise=0.5, max_shift=100)
    assert noisy.dtype == np.float32 and noisy.shape == (3, 4)
    assert (noisy[:, :2] >= 0).all() and (noisy[:, 2] <= 64).all() and (noisy[:, 3] <= 64).all()
    assert (noisy[:, 2:] - noisy[:, :2] >= 1).all()
    again = jitter_boxes(boxes, np.random.default_rng(0), (64, 64), noise=0.5, max_shift=100)
    np.testing.assert_array_equal(noisy, again)


def test_jitter_boxes_shift_is_capped_and_zero_noise_keeps_boxes():
    boxes = np.array([[20, 20, 220, 220]], dtype=np.float32)
    assert np.array_equal(jitter_boxes(boxes, np.random.default_rng(1), (256, 256), noise=0.0), boxes)
    shifts = [
        np.abs(
            jitter_boxes(boxes, np.random.default_rng(s), (256, 256), noise=1.0, max_shift=5) - boxes
        ).max()
        for s in range(20)
    ]
    assert max(shifts) <= 5 + 1e-5 and max(shifts) > 4  # capped, and the cap is reached


def test_foreground_points_land_inside_their_masks():
    masks = _disc_masks(4)
    for seed in range(10):
        coords, labels = sample_foreground_points(masks, np.random.default_rng(seed))
        assert coords.shape == (4, 1, 2) and labels.tolist() == [[1]] * 4
        x, y = coords[:, 0, 0].astype(int), coords[:, 0, 1].astype(int)
        assert masks[np.arange(4), y, x].all()


def test_foreground_points_refuse_empty_masks():
    masks = _disc_masks(2)
    masks[1] = False
    with pytest.raises(ValueError, match=r"\[1\] are empty"):
        sample_foreground_points(masks, np.random.default_rng(0))


def test_correction_clicks_land_in_the_error_region_with_the_right_sign():
    targets = np.zeros((3, 32, 32), dtype=bool)
    targets[:, 8:24, 8:24] = True
    predicted = targets.copy()
    predicted[0, 8:24, 8:16] = False  # only misses: every click is positive
    predicted[1, 0:4, :] = True  # only extra pixels: every click is negative
    seen = {0: set(), 1: set()}
    for seed in range(30):
        coords, labels = correction_clicks(predicted, targets, np.random.default_rng(seed))
        x, y = coords[:, 0, 0].astype(int), coords[:, 0, 1].astype(int)
        assert labels[0, 0] == 1 and targets[0, y[0], x[0]] and not predicted[0, y[0], x[0]]
        assert labels[1, 0] == 0 and predicted[1, y[1], x[1]] and not targets[1, y[1], x[1]]
        assert labels[2, 0] == PAD_LABEL  # perfect prediction: nothing to correct
        seen[0].add((x[0], y[0]))
        seen[1].add((x[1], y[1]))
    assert len(seen[0]) > 20 and len(seen[1]) > 20  # spread over the region, not one fixed pixel


def test_correction_clicks_mixed_errors_use_both_signs():
    targets = np.zeros((1, 32, 32), dtype=bool)
    targets[0, 8:24, 8:24] = True
    predicted = np.zeros_like(targets)
    predicted[0, 12:28, 12:28] = True
    labels = [correction_clicks(predicted, targets, np.random.default_rng(s))[1][0, 0] for s in range(40)]
    assert set(labels) == {0, 1}
    with pytest.raises(ValueError, match="same shape"):
        correction_clicks(predicted[:, :8], targets, np.random.default_rng(0))
