"""Point prompts chosen per flat colour region (grounded_sam/sam/everything/prompt_points.py)."""

from __future__ import annotations

import numpy as np
import pytest

from grounded_sam.data import iter_scenes
from grounded_sam.sam import build_sam
from grounded_sam.sam.everything import EverythingConfig, MaskGenerator
from grounded_sam.sam.everything.mask_ops import layer_point_grids
from grounded_sam.sam.everything.prompt_points import FlatRegionPoints, edge_strength, spread

GRID = layer_point_grids(24, 0, 1)[0]


def grid_pixels(grid: np.ndarray, height: int, width: int) -> np.ndarray:
    return np.minimum((grid * [width, height]).astype(np.int64), [width - 1, height - 1])


def test_a_flat_image_keeps_a_few_spread_grid_points() -> None:
    image = np.full((96, 128, 3), 90, dtype=np.uint8)
    points = FlatRegionPoints(per_region=3, region_stride=0)(image, GRID)
    indices = [int(np.flatnonzero((row == GRID).all(axis=1))[0]) for row in points]
    # Without edges every point is equally deep: the first grid point is kept, then the farthest from it
    # (the opposite corner), then the farthest from both; in the grid's order.
    assert indices == sorted(indices) and len(indices) == 3
    assert indices[0] == 0 and indices[-1] == len(GRID) - 1


def test_each_side_of_an_edge_keeps_its_own_points_and_the_edge_keeps_all() -> None:
    image = np.zeros((120, 120, 3), dtype=np.uint8)
    image[:, 57:] = (200, 40, 40)  # the grid's column at x = 57 lies on the edge
    points = FlatRegionPoints(per_region=2, region_stride=0)(image, GRID)
    pixels = grid_pixels(points, 120, 120)
    edge = edge_strength(image).numpy()[pixels[:, 1], pixels[:, 0]] >= 8.0
    grid_edge = edge_strength(image).numpy()[
        grid_pixels(GRID, 120, 120)[:, 1], grid_pixels(GRID, 120, 120)[:, 0]
    ]
    assert edge.sum() == (grid_edge >= 8.0).sum() > 0
    assert (pixels[~edge, 0] < 57).sum() == 2
    assert (pixels[~edge, 0] > 57).sum() == 2


def test_a_flat_region_keeps_a_grid_of_every_other_row_and_column() -> None:
    image = np.full((96, 96, 3), 30, dtype=np.uint8)
    points = FlatRegionPoints(per_region=1, region_stride=2)(image, GRID)
    coarse = GRID.reshape(24, 24, 2)[::2, ::2].reshape(-1, 2)
    on_coarse = (points[:, None] == coarse[None]).all(axis=2).any(axis=1)
    assert on_coarse.sum() == 12 * 12
    assert (~on_coarse).sum() <= 1  # the region's one spread point, if it is not on the coarse grid


def test_every_object_keeps_a_point_and_most_of_the_grid_goes() -> None:
    kept = []
    for scene in iter_scenes(1000, 8):
        points = FlatRegionPoints()(scene.image, GRID)
        kept.append(len(points) / len(GRID))
        pixels = grid_pixels(points, *scene.image.shape[:2])
        every = grid_pixels(GRID, *scene.image.shape[:2])
        grid_hits = scene.masks[:, every[:, 1], every[:, 0]].any(axis=1)
        hits = scene.masks[:, pixels[:, 1], pixels[:, 0]].any(axis=1)
        assert hits[grid_hits].all(), scene.labels
    assert np.mean(kept) < 0.35


def test_spread_takes_the_deepest_then_the_farthest() -> None:
    points = np.array([[0, 0], [1, 0], [10, 0], [5, 0]], dtype=np.float64)
    depth = np.array([0.0, 3.0, 1.0, 2.0])
    assert spread(points, depth, 2).tolist() == [1, 2]
    assert spread(points, depth, 3).tolist() == [1, 2, 3]
    assert spread(points, depth, 9).tolist() == [0, 1, 2, 3]


@pytest.mark.parametrize(
    "settings",
    [
        {"edge_threshold": 0.0},
        {"edge_threshold": float("nan")},
        {"per_region": 0},
        {"region_stride": -1},
        {"region_stride": 1.5},
    ],
)
def test_bad_settings_are_refused(settings: dict) -> None:
    with pytest.raises(ValueError):
        FlatRegionPoints(**settings)


def test_bad_inputs_are_refused() -> None:
    with pytest.raises(ValueError, match="grid"):
        FlatRegionPoints()(np.zeros((8, 8, 3), np.uint8), np.zeros((4, 3)))
    with pytest.raises(ValueError, match="image"):
        FlatRegionPoints()(np.zeros((8, 8), np.uint8), GRID)


def test_the_generator_decodes_only_the_chosen_points() -> None:
    scene = next(iter(iter_scenes(1000, 1)))
    config = EverythingConfig(
        points_per_side=24, points_per_batch=144, pred_iou_thresh=0.3, stability_score_thresh=0.4
    )
    select = FlatRegionPoints()
    chosen = select(scene.image, GRID) * [scene.image.shape[1], scene.image.shape[0]]
    generator = MaskGenerator(build_sam("demo_sam"), config=config, prompt_points=select)
    records = generator.generate(scene.image)
    assert generator.stats.prompts == len(chosen) < len(GRID)
    assert records
    for record in records:
        assert np.isclose(chosen, record["point_coords"][0]).all(axis=1).any()
    plain = MaskGenerator(build_sam("demo_sam"), config=config)
    plain.generate(scene.image)
    assert plain.stats.prompts == len(GRID)
