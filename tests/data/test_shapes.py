"""Shape geometry: exact rasterisation, anti-aliased coverage, placement sampling and the palette."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from grounded_sam.data.shapes import (
    COLORS,
    DEFAULT_COLORS,
    SHAPE_NAMES,
    SHAPES,
    Placement,
    clip_window,
    coverage,
    outlines,
    rasterize,
    sample_placement,
)

R = 40.0
SQRT3 = math.sqrt(3)

# Area of each shape with circumradius 1, aspect 1 and the given detail parameter.
EXPECTED_UNIT_AREA = [
    ("circle", 0.5, math.pi),
    ("square", 0.5, 2.0),
    ("triangle", 0.5, 3 * SQRT3 / 4),
    ("hexagon", 0.5, 3 * SQRT3 / 2),
    ("ring", 0.0, math.pi * (1 - 0.45**2)),
    ("ring", 1.0, math.pi * (1 - 0.70**2)),
    # Star with outer radius 1 and inner radius r: 10 triangles of area r sin(36 deg) / 2.
    ("star", 0.0, 5 * 0.38 * math.sin(math.pi / 5)),
    # Cross of half-width w and arm length 1 has area 4w(2 - w) before scaling by 1 / (1 + w^2).
    ("cross", 0.0, 4 * 0.22 * (2 - 0.22) / (1 + 0.22**2)),
]


@pytest.mark.parametrize(("shape", "detail", "unit_area"), EXPECTED_UNIT_AREA)
def test_rasterized_area_matches_geometry(shape: str, detail: float, unit_area: float) -> None:
    mask, _, _ = rasterize(Placement(shape, cx=60.3, cy=55.7, radius=R, angle=0.37, detail=detail))
    assert mask.sum() == pytest.approx(unit_area * R * R, rel=0.02)


def test_aspect_squashes_area_and_extent() -> None:
    round_mask, _, _ = rasterize(Placement("ellipse", cx=50.0, cy=50.0, radius=R, aspect=1.0))
    flat_mask, _, _ = rasterize(Placement("ellipse", cx=50.0, cy=50.0, radius=R, aspect=2.0))
    assert flat_mask.sum() == pytest.approx(round_mask.sum() / 2, rel=0.02)
    # angle 0 keeps the long axis along x: full width, half height.
    rows = np.flatnonzero(flat_mask.any(axis=1))
    cols = np.flatnonzero(flat_mask.any(axis=0))
    assert cols[-1] - cols[0] + 1 == pytest.approx(2 * R, abs=1)
    assert rows[-1] - rows[0] + 1 == pytest.approx(R, abs=1)


def test_window_holds_the_shape_and_pixel_centres_decide() -> None:
    p = Placement("square", cx=10.0, cy=10.0, radius=5 * math.sqrt(2), angle=0.0)
    mask, y0, x0 = rasterize(p)
    y1, _, x1, _ = p.window()
    assert (y0, x0) == (y1, x1)
    # An axis-aligned 10x10 square on pixel edges [5, 15) covers exactly 100 pixel centres.
    ys, xs = np.nonzero(mask)
    assert mask.sum() == 100
    assert (ys.min() + y0, ys.max() + y0, xs.min() + x0, xs.max() + x0) == (5, 14, 5, 14)


def test_star_is_concave_and_ring_is_hollow() -> None:
    star, y0, x0 = rasterize(Placement("star", cx=50.5, cy=50.5, radius=R, angle=0.0, detail=0.0))
    # angle 0: the first tip points to -y (up); the notch between tips lies at 36 degrees from it.
    assert star[50 - int(0.9 * R) - y0, 50 - x0]
    notch = (-math.pi / 2) + math.pi / 5
    nx, ny = 50 + 0.9 * R * math.cos(notch), 50 + 0.9 * R * math.sin(notch)
    assert not star[int(ny) - y0, int(nx) - x0]
    ring, y0, x0 = rasterize(Placement("ring", cx=50.5, cy=50.5, radius=R))
    assert not ring[50 - y0, 50 - x0]
    assert ring[50 - y0, 50 + int(0.9 * R) - x0]


@pytest.mark.parametrize("shape", SHAPE_NAMES)
def test_coverage_agrees_with_exact_mask(shape: str) -> None:
    p = Placement(shape, cx=45.2, cy=47.9, radius=30.0, angle=1.1, aspect=SHAPES[shape].aspect_range[1])
    mask, y0, x0 = rasterize(p)
    alpha, ay0, ax0 = coverage(p)
    assert (ay0, ax0) == (y0, x0) and alpha.shape == mask.shape
    assert alpha.dtype == np.float32 and alpha.min() >= 0 and alpha.max() <= 1
    soft = alpha >= 0.5
    assert (soft & mask).sum() / (soft | mask).sum() > 0.95
    # Anti-aliasing: edge pixels get partial coverage.
    assert ((alpha > 0.05) & (alpha < 0.95)).sum() > 20


def test_outlines_stay_within_radius() -> None:
    for shape in SHAPE_NAMES:
        p = Placement(shape, cx=20.0, cy=30.0, radius=12.0, angle=0.7, aspect=1.3, detail=0.4)
        for xy, _ in outlines(p):
            assert np.hypot(xy[:, 0] - 20.0, xy[:, 1] - 30.0).max() <= 12.0 + 1e-9


def test_sample_placement_is_seeded_and_in_range() -> None:
    a = [sample_placement(np.random.default_rng(5), SHAPE_NAMES, (100, 200), (0.1, 0.4)) for _ in range(2)]
    assert a[0] == a[1]
    rng = np.random.default_rng(0)
    for _ in range(200):
        p = sample_placement(rng, ("star", "ellipse"), (100, 200), (0.1, 0.4))
        assert p.shape in ("star", "ellipse")
        assert 5.0 <= p.radius <= 20.0
        assert 0.3 * p.radius <= p.cx <= 200 - 0.3 * p.radius
        assert 0.3 * p.radius <= p.cy <= 100 - 0.3 * p.radius
        lo, hi = SHAPES[p.shape].aspect_range
        assert lo <= p.aspect <= hi and 0 <= p.detail < 1


def test_clip_window_crops_at_image_edges() -> None:
    window = np.arange(20).reshape(4, 5)
    ys, xs, sub = clip_window(window, -1, 8, 10, 10)
    assert (ys, xs) == (slice(0, 3), slice(8, 10))
    np.testing.assert_array_equal(sub, window[1:, :2])


def test_palette_has_required_and_separable_colours() -> None:
    required = {"red", "green", "blue", "yellow", "purple", "orange", "white", "black"}
    assert required <= set(COLORS) and set(DEFAULT_COLORS) == required
    rgb = np.array(list(COLORS.values()), dtype=float)
    closest = min(np.linalg.norm(a - b) for a, b in itertools.combinations(rgb, 2))
    assert closest >= 90
    assert {"circle", "square", "triangle", "star", "ring"} <= set(SHAPE_NAMES)
