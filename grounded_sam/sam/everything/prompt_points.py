"""Fewer point prompts for segment everything: the grid thinned where the image is flat.

Each decoded point costs about the same, and most of a regular grid's points repeat each other: the
points inside one region of even colour (the background, the inside of an object) prompt nearly the same
masks. :class:`FlatRegionPoints` keeps the grid's points that lie on colour edges, a coarser grid over
the connected regions without edges, and a few spread points of each region (the one deepest inside it
first, then the ones farthest from those already kept), so that no region goes without. A generator
opts in with ``MaskGenerator(..., prompt_points=FlatRegionPoints())``; the prompts are then a subset of
the plain grid's.

Example:
    >>> select = FlatRegionPoints()
    >>> points = select(image, grid)  # (Q, 2) rows of grid, Q <= len(grid)  # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage


class PromptPointSelector(Protocol):
    """Chooses the point prompts of one image (or crop) from its grid."""

    def __call__(self, image: np.ndarray, grid: np.ndarray) -> np.ndarray:
        """The (Q, 2) rows of the (P, 2) XY ``grid`` (unit square) to decode on the (H, W, 3) ``image``."""
        ...


def edge_strength(image: np.ndarray) -> torch.Tensor:
    """(H, W) float32 colour edge strength of an (H, W, 3) uint8 RGB image: the largest over the channels
    of the gradient magnitude (0-255 per pixel, central differences) of the image smoothed by a 3 x 3 box."""
    pixels = torch.from_numpy(np.asarray(image, dtype=np.float32)).permute(2, 0, 1)[:, None]
    smooth = F.avg_pool2d(F.pad(pixels, (1, 1, 1, 1), mode="replicate"), 3, stride=1)
    padded = F.pad(smooth, (1, 1, 1, 1), mode="replicate")
    dx = (padded[..., 1:-1, 2:] - padded[..., 1:-1, :-2]) / 2
    dy = (padded[..., 2:, 1:-1] - padded[..., :-2, 1:-1]) / 2
    return torch.sqrt(dx * dx + dy * dy).amax(dim=0)[0]


@dataclass(frozen=True)
class FlatRegionPoints:
    """Grid points on colour edges, a coarser grid over each flat region, and a few spread points of it.

    Attributes:
        edge_threshold: a pixel whose :func:`edge_strength` is at least this (levels per pixel) is an
            edge; the others form the flat regions (4-connected). Pixel noise of the demo scenes stays
            under 5, object outlines are tens of levels.
        per_region: spread points kept per flat region (the deepest inside it first).
        region_stride: a flat region also keeps its points on every ``region_stride``-th grid row and
            column (0: none; 2 keeps a grid half as fine).
    """

    edge_threshold: float = 8.0
    per_region: int = 3
    region_stride: int = 2

    def __post_init__(self) -> None:
        if not np.isfinite(self.edge_threshold) or self.edge_threshold <= 0:
            raise ValueError(f"edge_threshold must be a positive number, got {self.edge_threshold!r}")
        for name, minimum in (("per_region", 1), ("region_stride", 0)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
                raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")

    def __call__(self, image: np.ndarray, grid: np.ndarray) -> np.ndarray:
        """The (Q, 2) rows of the (P, 2) XY unit-square ``grid`` to decode on the (H, W, 3) uint8
        ``image``, in the grid's order."""
        grid = np.asarray(grid, dtype=np.float64)
        if grid.ndim != 2 or grid.shape[1] != 2:
            raise ValueError(f"grid must be (P, 2) XY points in the unit square, got shape {grid.shape}")
        image = np.asarray(image)
        if image.ndim != 3 or image.shape[2] != 3 or image.shape[0] == 0 or image.shape[1] == 0:
            raise ValueError(f"image must be a non-empty (H, W, 3) RGB array, got shape {image.shape}")
        height, width = image.shape[:2]
        pixels = np.minimum((grid * [width, height]).astype(np.int64), [width - 1, height - 1])
        flat = edge_strength(image).numpy() < self.edge_threshold
        regions, _ = ndimage.label(flat)
        depth = ndimage.distance_transform_edt(flat)[pixels[:, 1], pixels[:, 0]]
        region = regions[pixels[:, 1], pixels[:, 0]]
        keep = [np.flatnonzero((region == 0) | (on_stride(grid, self.region_stride) & (region > 0)))]
        for label in np.unique(region[region > 0]):
            members = np.flatnonzero(region == label)
            keep.append(members[spread(pixels[members], depth[members], self.per_region)])
        return grid[np.unique(np.concatenate(keep))]


def on_stride(grid: np.ndarray, stride: int) -> np.ndarray:
    """(P,) bool: the (P, 2) ``grid``'s points on every ``stride``-th of its distinct x and y values
    (none when ``stride`` is 0)."""
    if stride == 0:
        return np.zeros(len(grid), dtype=bool)
    chosen = np.ones(len(grid), dtype=bool)
    for axis in (0, 1):
        rank = np.unique(grid[:, axis], return_inverse=True)[1].reshape(-1)
        chosen &= rank % stride == 0
    return chosen


def spread(points: np.ndarray, depth: np.ndarray, count: int) -> np.ndarray:
    """Indices of ``count`` of the (N, 2) ``points`` (all when N <= count): the deepest (largest
    ``depth``) first, then each time the one farthest from those chosen (farthest-point sampling)."""
    if len(points) <= count:
        return np.arange(len(points))
    chosen = [int(np.argmax(depth))]
    distance = np.linalg.norm(points - points[chosen[0]], axis=1)
    while len(chosen) < count:
        farthest = int(np.argmax(distance))
        chosen.append(farthest)
        distance = np.minimum(distance, np.linalg.norm(points - points[farthest], axis=1))
    return np.array(chosen, dtype=np.int64)
