"""Backgrounds: every kind renders, deterministically, in range, and the kinds look different."""

from __future__ import annotations

import colorsys

import numpy as np
import pytest

from grounded_sam.data.backgrounds import (
    BACKGROUND_KINDS,
    hsv_to_rgb,
    multiscale_noise,
    random_palette,
    render_background,
    smooth_noise,
)


@pytest.mark.parametrize("kind", BACKGROUND_KINDS)
def test_background_is_seeded_and_in_range(kind: str) -> None:
    a = render_background(kind, np.random.default_rng(3), 40, 56)
    b = render_background(kind, np.random.default_rng(3), 40, 56)
    c = render_background(kind, np.random.default_rng(4), 40, 56)
    assert a.shape == (40, 56, 3) and a.dtype == np.float32
    assert a.min() >= 0 and a.max() <= 255
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_kinds_differ_in_structure() -> None:
    def spread(kind: str) -> float:
        image = render_background(kind, np.random.default_rng(1), 64, 64)
        return float(np.ptp(image, axis=(0, 1)).max())

    assert spread("flat") == 0
    for kind in ("gradient", "noise", "texture", "photo"):
        assert spread(kind) > 5


def test_unknown_kind_is_rejected() -> None:
    with pytest.raises(ValueError, match="plasma"):
        render_background("plasma", np.random.default_rng(0), 8, 8)


def test_hsv_to_rgb_matches_colorsys() -> None:
    hsv = np.random.default_rng(0).random((200, 3))
    expected = np.array([colorsys.hsv_to_rgb(*row) for row in hsv])
    np.testing.assert_allclose(hsv_to_rgb(hsv), expected, atol=1e-12)


def test_palette_is_muted() -> None:
    rgb = random_palette(np.random.default_rng(0), 500) / 255.0
    saturation = (rgb.max(1) - rgb.min(1)) / rgb.max(1)
    assert saturation.max() <= 0.35 + 1e-5
    assert rgb.max(1).min() >= 0.3 - 1e-5 and rgb.max(1).max() <= 0.85 + 1e-5


def test_noise_is_smooth_and_normalised() -> None:
    field = smooth_noise(np.random.default_rng(0), 64, 80, cell=16)
    assert field.shape == (64, 80) and field.min() >= 0 and field.max() <= 1
    # Neighbouring pixels differ far less than random values would.
    assert np.abs(np.diff(field, axis=1)).mean() < 0.05
    multi = multiscale_noise(np.random.default_rng(0), 64, 80, cell=32, octaves=4)
    assert multi.min() == 0 and multi.max() == pytest.approx(1)
