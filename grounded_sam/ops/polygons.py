"""Masks to polygons: outlines of connected components (holes stitched in), simplified, as XY vertices.

Vertices lie on pixel centres by default (integer indices, the convention of `cv2.findContours` and of
rasterisers such as `cv2.fillPoly` or `PIL.ImageDraw.polygon`), or on pixel edges (pycocotools'
continuous frame) with ``pixel_edges=True``.
"""

from __future__ import annotations

import itertools
from types import ModuleType

import numpy as np

_DISTANCE_BLOCK = 1024  # rows per block when searching the closest vertex pair of two polygons


def mask_to_polygons(
    mask: np.ndarray,
    *,
    normalize: bool = True,
    largest_only: bool = False,
    keep_holes: bool = True,
    tolerance: float = 1.0,
    pixel_edges: bool = False,
) -> list[np.ndarray]:
    """Outline each connected component of an (H, W) bool mask as a (K, 2) float32 XY polygon.

    Polygons are sorted by area, largest first. With `keep_holes`, a component's holes are stitched into
    its outline through zero-width bridges, so filling the polygon reproduces the hole. Outlines are
    simplified with Douglas-Peucker at `tolerance` pixels (0 keeps every contour point). Components too
    small for a 3-vertex outline are represented by their bounding rectangle.

    Vertices lie on the centres of the boundary pixels (pixel indices, the convention of inclusive
    rasterisers: cv2.fillPoly, PIL.ImageDraw, Ultralytics). With `pixel_edges`, each outline is instead
    pushed half a pixel outwards onto the pixel edges, in continuous coordinates where pixel (x, y)
    spans [x, x + 1) x [y, y + 1) (the convention of pycocotools). With `normalize`, x is divided by W
    and y by H. An empty mask gives an empty list.
    """
    cv2 = _require_cv2()
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"mask must have shape (H, W); got {mask.shape}")
    mode = cv2.RETR_CCOMP if keep_holes else cv2.RETR_EXTERNAL
    contours, hierarchy = cv2.findContours(mask.astype(np.uint8), mode, cv2.CHAIN_APPROX_NONE)
    if not contours:
        return []
    parents = hierarchy[0][:, 3]
    outlines: list[tuple[float, np.ndarray]] = []
    for i, contour in enumerate(contours):
        if parents[i] != -1:
            continue  # a hole: attached to its outer contour below
        outer = _ring(cv2, contour, tolerance, pixel_edges, hole=False)
        holes = [
            _ring(cv2, contours[j], tolerance, pixel_edges, hole=True) for j in np.flatnonzero(parents == i)
        ]
        rings = [outer, *holes]
        outlines.append((float(cv2.contourArea(contour)), stitch_polygons(rings)))
    outlines.sort(key=lambda item: -item[0])
    polygons = [poly for _, poly in outlines[: 1 if largest_only else None]]
    if normalize:
        h, w = mask.shape
        polygons = [poly / np.array([w, h], dtype=np.float32) for poly in polygons]
    return polygons


def stitch_polygons(polygons: list[np.ndarray]) -> np.ndarray:
    """Join several (K_i, 2) polygons into one closed (K, 2) path through zero-width bridges.

    Each polygon is entered at the vertex closest to the previous one and walked once around, and every
    bridge is crossed there and back, so a filled result covers the same pixels as the parts (plus the
    one-pixel bridges). This is how a single YOLO line carries several components or holes.
    """
    if not polygons:
        raise ValueError("stitch_polygons() needs at least one polygon")
    if len(polygons) == 1:
        return polygons[0]
    # links[i] = (exit vertex on polygon i, entry vertex on polygon i + 1)
    links = [_closest_pair(a, b) for a, b in itertools.pairwise(polygons)]
    entries = [0] + [entry for _, entry in links]
    path = _closed_loop(polygons[-1], entries[-1])
    for i in range(len(polygons) - 2, -1, -1):
        loop = _closed_loop(polygons[i], entries[i])
        k = (links[i][0] - entries[i]) % len(polygons[i])
        path = np.concatenate([loop[: k + 1], path, loop[k:]])
    return path


def _require_cv2() -> ModuleType:
    try:
        import cv2
    except ImportError as e:
        raise ImportError(
            "polygon export needs OpenCV; install it with `pip install opencv-python-headless`"
        ) from e
    return cv2


def _ring(
    cv2: ModuleType, contour: np.ndarray, tolerance: float, pixel_edges: bool, hole: bool
) -> np.ndarray:
    """(K, 1, 2) int contour -> (K', 2) float32 simplified ring; a box outline if it degenerates."""
    if tolerance > 0:
        contour = cv2.approxPolyDP(contour, tolerance, True)
    ring = contour.reshape(-1, 2).astype(np.float32)
    if len(ring) < 3:
        (x0, y0), (x1, y1) = ring.min(axis=0), ring.max(axis=0) + (1 if pixel_edges else 0)
        return np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], dtype=np.float32)
    if pixel_edges:
        # Grow outlines (shrink holes) by half a pixel, then move from pixel centres to the
        # continuous frame where pixel x spans [x, x + 1).
        ring = _offset_ring(ring, -0.5 if hole else 0.5) + 0.5
    return ring


def _offset_ring(ring: np.ndarray, distance: float) -> np.ndarray:
    """Move every vertex of a closed (K, 2) ring `distance` outwards (inwards if negative), mitred."""
    nxt = np.roll(ring, -1, axis=0)
    x, y = ring[:, 0], ring[:, 1]
    orientation = 1.0 if float(np.sum(x * nxt[:, 1] - nxt[:, 0] * y)) > 0 else -1.0
    edges = nxt - ring  # edge k runs from vertex k to vertex k + 1
    normals = orientation * np.stack([edges[:, 1], -edges[:, 0]], axis=1)
    normals /= np.maximum(np.linalg.norm(normals, axis=1, keepdims=True), 1e-6)
    before, after = np.roll(normals, 1, axis=0), normals  # normals of the two edges meeting at a vertex
    bisector = before + after
    length = np.linalg.norm(bisector, axis=1, keepdims=True)
    bisector = np.where(length > 1e-6, bisector / np.maximum(length, 1e-6), after)
    # A mitre of length d / cos(half angle) keeps both edges at distance d; cap it at 2 d for spikes.
    cos_half = np.maximum((bisector * after).sum(axis=1, keepdims=True), 0.5)
    return (ring + bisector * (distance / cos_half)).astype(np.float32)


def _closest_pair(a: np.ndarray, b: np.ndarray) -> tuple[int, int]:
    """Indices (i, j) minimising |a[i] - b[j]|, computed in blocks to bound memory."""
    best = (np.inf, 0, 0)
    for start in range(0, len(a), _DISTANCE_BLOCK):
        block = a[start : start + _DISTANCE_BLOCK]
        d2 = ((block[:, None, :] - b[None, :, :]) ** 2).sum(axis=2)
        i, j = np.unravel_index(int(np.argmin(d2)), d2.shape)
        if d2[i, j] < best[0]:
            best = (float(d2[i, j]), start + int(i), int(j))
    return best[1], best[2]


def _closed_loop(polygon: np.ndarray, start: int) -> np.ndarray:
    """The vertices of `polygon` from index `start` once around and back to it: (K + 1, 2)."""
    rolled = np.roll(polygon, -start, axis=0)
    return np.concatenate([rolled, rolled[:1]])
