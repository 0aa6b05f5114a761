"""Shape geometry and colour palette of the synthetic scenes.

Each shape is defined once, in a local frame where its circumscribed circle is the unit circle, as a
list of parts (polygons and disks that fill or erase). Two rasterisers read that one definition:

* `rasterize` tests pixel centres exactly (no anti-aliasing), so a mask is exactly the set of pixels
  that the scene renderer paints;
* `coverage` draws the outlines with Pillow at a supersampled resolution and box-filters them down,
  giving anti-aliased edges for the alternative renderer.

Image coordinates are continuous pixel-edge coordinates: pixel (row r, column c) covers
[c, c + 1) x [r, r + 1) and its centre is (c + 0.5, r + 0.5).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

import numpy as np
from PIL import Image, ImageDraw

COLORS: Mapping[str, tuple[int, int, int]] = MappingProxyType(
    {
        "red": (215, 35, 35),
        "green": (40, 165, 60),
        "blue": (40, 80, 215),
        "yellow": (245, 215, 35),
        "purple": (135, 55, 185),
        "orange": (245, 125, 20),
        "white": (245, 245, 245),
        "black": (20, 20, 20),
        "pink": (245, 130, 190),
        "cyan": (40, 200, 215),
        "brown": (130, 80, 40),
    }
)
"""Every colour a scene can use, name -> base RGB. Pairwise RGB distances are at least 90."""

DEFAULT_COLORS: tuple[str, ...] = ("red", "green", "blue", "yellow", "purple", "orange", "white", "black")


@dataclass(frozen=True, eq=False)
class Part:
    """A region of a shape in its unit frame: a polygon of (K, 2) (u, v) vertices, or a centred disk."""

    vertices: np.ndarray | None = None
    radius: float = 0.0
    erase: bool = False


@dataclass(frozen=True)
class ShapeSpec:
    """A shape kind: `parts(detail)` builds its unit-frame parts from a shape parameter in [0, 1)."""

    name: str
    parts: Callable[[float], tuple[Part, ...]]
    aspect_range: tuple[float, float] = (1.0, 1.0)


def _regular(n: int, start: float, radii: tuple[float, ...] = (1.0,)) -> np.ndarray:
    # Vertices on circles, cycling through `radii` (two radii give a star); scalar math keeps the
    # vertex coordinates independent of numpy's vectorised trigonometry.
    pts = [
        (radii[k % len(radii)] * math.cos(start + 2 * math.pi * k / n),
         radii[k % len(radii)] * math.sin(start + 2 * math.pi * k / n))
        for k in range(n)
    ]  # fmt: skip
    return np.array(pts, dtype=np.float64)


def _cross(detail: float) -> tuple[Part, ...]:
    w = 0.22 + 0.14 * detail  # half-width of an arm; arms reach 1
    pts = [
        (w, 1),
        (w, w),
        (1, w),
        (1, -w),
        (w, -w),
        (w, -1),
        (-w, -1),
        (-w, -w),
        (-1, -w),
        (-1, w),
        (-w, w),
        (-w, 1),
    ]
    return (Part(vertices=np.array(pts) / math.hypot(1.0, w)),)


SHAPES: Mapping[str, ShapeSpec] = MappingProxyType(
    {
        spec.name: spec
        for spec in (
            ShapeSpec("circle", lambda d: (Part(radius=1.0),)),
            ShapeSpec("square", lambda d: (Part(vertices=_regular(4, math.pi / 4)),)),
            ShapeSpec("triangle", lambda d: (Part(vertices=_regular(3, -math.pi / 2)),), (1.0, 1.3)),
            ShapeSpec(
                "star",
                lambda d: (Part(vertices=_regular(10, -math.pi / 2, (1.0, 0.38 + 0.17 * d))),),
                (1.0, 1.15),
            ),
            ShapeSpec("ring", lambda d: (Part(radius=1.0), Part(radius=0.45 + 0.25 * d, erase=True))),
            ShapeSpec("ellipse", lambda d: (Part(radius=1.0),), (1.5, 2.2)),
            ShapeSpec("hexagon", lambda d: (Part(vertices=_regular(6, 0.0)),)),
            ShapeSpec("cross", _cross),
        )
    }
)
"""Every shape kind a scene can use, name -> spec."""

SHAPE_NAMES: tuple[str, ...] = tuple(SHAPES)


@dataclass(frozen=True)
class Placement:
    """Where one shape instance is drawn, in image pixel-edge coordinates.

    The unit frame maps to the image by: squash v by 1 / `aspect`, scale by `radius`, rotate by
    `angle` (radians, from +x towards +y, i.e. clockwise on screen), translate to (`cx`, `cy`).
    The shape therefore lies within `radius` of its centre.
    """

    shape: str
    cx: float
    cy: float
    radius: float
    angle: float = 0.0
    aspect: float = 1.0
    detail: float = 0.5

    def window(self) -> tuple[int, int, int, int]:
        """(y0, y1, x0, x1): pixel range holding every pixel centre of the shape (may leave the image)."""
        r = self.radius
        return (
            math.floor(self.cy - r),
            math.ceil(self.cy + r),
            math.floor(self.cx - r),
            math.ceil(self.cx + r),
        )


def _in_polygon(vertices: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Even-odd rule: True where (u, v) lies inside the polygon."""
    inside = np.zeros(u.shape, dtype=bool)
    x1, y1 = vertices[-1]
    for x2, y2 in vertices:
        if y1 != y2:
            crosses = (y1 > v) != (y2 > v)
            x_at = x1 + (v - y1) * ((x2 - x1) / (y2 - y1))
            inside ^= crosses & (u < x_at)
        x1, y1 = x2, y2
    return inside


def rasterize(p: Placement) -> tuple[np.ndarray, int, int]:
    """Exact mask of a shape: pixels whose centre lies inside it.

    Returns (mask, y0, x0): mask (h, w) bool over the unclipped `p.window()`, whose top-left pixel is
    (y0, x0); the window may extend past the image edges.
    """
    y0, y1, x0, x1 = p.window()
    cos, sin = math.cos(p.angle), math.sin(p.angle)
    dx = (np.arange(x0, x1, dtype=np.float64) + 0.5 - p.cx)[None, :]
    dy = (np.arange(y0, y1, dtype=np.float64) + 0.5 - p.cy)[:, None]
    u = (dx * cos + dy * sin) / p.radius
    v = (dy * cos - dx * sin) * (p.aspect / p.radius)
    mask = np.zeros(u.shape, dtype=bool)
    for part in SHAPES[p.shape].parts(p.detail):
        if part.vertices is None:
            region = u * u + v * v <= part.radius * part.radius
        else:
            region = _in_polygon(part.vertices, u, v)
        mask = mask & ~region if part.erase else mask | region
    return mask, y0, x0


def outlines(p: Placement) -> list[tuple[np.ndarray, bool]]:
    """The shape as image-coordinate polygons: a list of ((K, 2) XY vertices, erase) in drawing order."""
    cos, sin = math.cos(p.angle), math.sin(p.angle)
    out = []
    for part in SHAPES[p.shape].parts(p.detail):
        uv = part.vertices
        if uv is None:
            # Enough vertices that the chords stay well under a pixel from the true curve.
            k = int(np.clip(2 * math.pi * part.radius * p.radius, 24, 720))
            uv = _regular(k, 0.0, (part.radius,))
        u, v = uv[:, 0] * p.radius, uv[:, 1] * (p.radius / p.aspect)
        xy = np.stack([p.cx + u * cos - v * sin, p.cy + u * sin + v * cos], axis=1)
        out.append((xy, part.erase))
    return out


def coverage(p: Placement, supersample: int = 4) -> tuple[np.ndarray, int, int]:
    """Anti-aliased coverage of a shape, drawn with Pillow at `supersample` times the resolution.

    Returns (alpha, y0, x0): alpha (h, w) float32 in [0, 1] over the unclipped `p.window()`.
    """
    y0, y1, x0, x1 = p.window()
    h, w, s = y1 - y0, x1 - x0, supersample
    canvas = Image.new("L", (w * s, h * s), 0)
    draw = ImageDraw.Draw(canvas)
    for xy, erase in outlines(p):
        # Pillow puts pixel centres on integer coordinates, ours sit at +0.5.
        local = (xy - (x0, y0)) * s - 0.5
        draw.polygon([tuple(pt) for pt in local.tolist()], fill=0 if erase else 255)
    hi = np.asarray(canvas, dtype=np.float32).reshape(h, s, w, s)
    return hi.mean(axis=(1, 3)) / 255.0, y0, x0


def sample_placement(
    rng: np.random.Generator,
    shapes: tuple[str, ...],
    size: tuple[int, int],
    size_range: tuple[float, float],
) -> Placement:
    """A random placement of one of `shapes` in an image of `size` (H, W).

    The diameter is log-uniform in `size_range` times min(H, W); the centre stays far enough inside
    that at most the outer 70 % of the radius leaves the image; rotation is uniform.
    """
    h, w = size
    shape = shapes[rng.integers(len(shapes))]
    lo, hi = size_range
    radius = 0.5 * min(h, w) * math.exp(rng.uniform(math.log(lo), math.log(hi)))
    margin = 0.3 * radius
    a_lo, a_hi = SHAPES[shape].aspect_range
    return Placement(
        shape=shape,
        cx=float(rng.uniform(margin, w - margin)),
        cy=float(rng.uniform(margin, h - margin)),
        radius=radius,
        angle=float(rng.uniform(0, 2 * math.pi)),
        aspect=math.exp(rng.uniform(math.log(a_lo), math.log(a_hi))),
        detail=float(rng.random()),
    )


def clip_window(window: np.ndarray, y0: int, x0: int, h: int, w: int) -> tuple[slice, slice, np.ndarray]:
    """Crop a window whose top-left pixel is (y0, x0) to an (h, w) image: (rows, columns, cropped window)."""
    top, left = max(y0, 0), max(x0, 0)
    bottom, right = min(y0 + window.shape[0], h), min(x0 + window.shape[1], w)
    return slice(top, bottom), slice(left, right), window[top - y0 : bottom - y0, left - x0 : right - x0]


def centre_offsets(p: Placement, ys: slice, xs: slice) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre offsets from the shape centre over an image region: dy (rows, 1), dx (1, cols) float32."""
    dy = np.arange(ys.start, ys.stop, dtype=np.float32)[:, None] + np.float32(0.5 - p.cy)
    dx = np.arange(xs.start, xs.stop, dtype=np.float32)[None, :] + np.float32(0.5 - p.cx)
    return dy, dx
