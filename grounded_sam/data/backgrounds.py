"""Random backgrounds for the synthetic scenes: flat, gradient, noise, texture and photo-like.

All renderers are vectorised numpy using only arithmetic on the pixel arrays (no trigonometry per
pixel), so a seed gives the same background on every machine. Palettes are muted (saturation at most
0.4) so the saturated shape colours stand out; white and black shapes are kept visible by the scene
generator's contrast check.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from types import MappingProxyType

import numpy as np

BACKGROUND_KINDS: tuple[str, ...] = ("flat", "gradient", "noise", "texture", "photo")

# Sector table of the HSV -> RGB conversion: indices into (v, q, p, t) for the R, G and B channels.
_HSV_SECTORS = np.array([[0, 3, 2], [1, 0, 2], [2, 0, 3], [2, 1, 0], [3, 2, 0], [0, 2, 1]])


def hsv_to_rgb(hsv: np.ndarray) -> np.ndarray:
    """(..., 3) HSV in [0, 1] -> (..., 3) float RGB in [0, 1]."""
    h, s, v = hsv[..., 0] * 6.0, hsv[..., 1], hsv[..., 2]
    sector = np.floor(h)
    f = h - sector
    comps = np.stack([v, v * (1 - s * f), v * (1 - s), v * (1 - s * (1 - f))], axis=-1)
    return np.take_along_axis(comps, _HSV_SECTORS[sector.astype(np.int64) % 6], axis=-1)


def random_palette(rng: np.random.Generator, n: int, max_saturation: float = 0.35) -> np.ndarray:
    """`n` muted colours around one random hue: (n, 3) float32 RGB in [0, 255]."""
    hue = (rng.random() + rng.uniform(-0.12, 0.12, n)) % 1.0
    hsv = np.stack([hue, rng.uniform(0.0, max_saturation, n), rng.uniform(0.3, 0.85, n)], axis=-1)
    return (hsv_to_rgb(hsv) * 255.0).astype(np.float32)


def smooth_noise(rng: np.random.Generator, height: int, width: int, cell: float) -> np.ndarray:
    """Value noise: random values on a grid of `cell`-pixel spacing, smoothly interpolated.

    Returns (height, width) float32 in [0, 1].
    """
    cell = max(float(cell), 1.0)
    grid = rng.random((math.ceil(height / cell) + 2, math.ceil(width / cell) + 2), dtype=np.float32)
    offset = rng.random(2)  # random phase so the grid lines do not sit on the image edges

    def axis(n: int, phase: float) -> tuple[np.ndarray, np.ndarray]:
        pos = (np.arange(n, dtype=np.float32) + 0.5) / np.float32(cell) + np.float32(phase)
        i = np.floor(pos).astype(np.int64)
        f = pos - i
        return i, f * f * (3 - 2 * f)  # smoothstep weights hide the grid

    iy, fy = axis(height, offset[0])
    ix, fx = axis(width, offset[1])
    rows = grid[:, ix] * (1 - fx) + grid[:, ix + 1] * fx  # interpolate along x on the small grid first
    return rows[iy] * (1 - fy)[:, None] + rows[iy + 1] * fy[:, None]


def multiscale_noise(
    rng: np.random.Generator, height: int, width: int, cell: float, octaves: int
) -> np.ndarray:
    """Sum of `octaves` value-noise layers, halving cell size and amplitude each time, rescaled to [0, 1]."""
    total = np.zeros((height, width), dtype=np.float32)
    for k in range(octaves):
        total += smooth_noise(rng, height, width, cell / 2**k) * np.float32(0.5**k)
    lo, hi = total.min(), total.max()
    return (total - lo) / max(hi - lo, 1e-6)


def _mix(c0: np.ndarray, c1: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Blend two RGB colours by a (H, W) weight map -> (H, W, 3) float32."""
    return c0 + t[..., None].astype(np.float32) * (c1 - c0)


def _coords(height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates as broadcastable (H, 1) and (1, W) float32 arrays."""
    y = np.arange(height, dtype=np.float32)[:, None] + 0.5
    x = np.arange(width, dtype=np.float32)[None, :] + 0.5
    return y, x


def _direction(rng: np.random.Generator) -> tuple[np.float32, np.float32]:
    angle = rng.uniform(0, 2 * math.pi)
    return np.float32(math.cos(angle)), np.float32(math.sin(angle))


def _flat(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    return np.broadcast_to(random_palette(rng, 1)[0], (height, width, 3)).copy()


def _gradient(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    c0, c1 = random_palette(rng, 2)
    y, x = _coords(height, width)
    if rng.random() < 0.5:
        cos, sin = _direction(rng)
        t = x * cos + y * sin
    else:
        cy, cx = rng.uniform(0, height), rng.uniform(0, width)
        t = np.sqrt((x - np.float32(cx)) ** 2 + (y - np.float32(cy)) ** 2)
    t = t - t.min()
    return _mix(c0, c1, t / max(float(t.max()), 1e-6))


def _noise(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    c0, c1 = random_palette(rng, 2)
    image = _mix(c0, c1, smooth_noise(rng, height, width, rng.uniform(6, 32)) * np.float32(0.5))
    sigma = np.float32(rng.uniform(4, 14))
    image += rng.standard_normal((height, width, 1), dtype=np.float32) * sigma  # grey grain
    image += rng.standard_normal((height, width, 3), dtype=np.float32) * (sigma * np.float32(0.3))
    return image


def _texture(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    c0, c1 = random_palette(rng, 2)
    delta = c1 - c0
    # Low contrast keeps textures from looking like shapes; math.hypot avoids BLAS-dependent rounding.
    c1 = c0 + delta * np.float32(min(1.0, rng.uniform(20, 50) / max(math.hypot(*delta.tolist()), 1e-6)))
    period = max(4.0, rng.uniform(0.03, 0.15) * min(height, width))
    y, x = _coords(height, width)
    cos, sin = _direction(rng)
    s = (x * cos + y * sin) / np.float32(period)
    style = rng.integers(3)
    if style == 0:  # stripes
        t = (s - np.floor(s)) < rng.uniform(0.3, 0.7)
    elif style == 1:  # rotated checkerboard
        r = (y * cos - x * sin) / np.float32(period)
        t = (np.floor(s) + np.floor(r)) % 2 == 1
    else:  # camouflage blobs
        t = smooth_noise(rng, height, width, 2 * period) > 0.5
    image = _mix(c0, c1, t)
    image += rng.standard_normal((height, width, 1), dtype=np.float32) * np.float32(rng.uniform(1, 4))
    return image


def _photo(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    c0, c1, c2 = random_palette(rng, 3, max_saturation=0.4)
    cell = rng.uniform(0.25, 0.6) * max(height, width)
    t = multiscale_noise(rng, height, width, cell, octaves=5)
    # Piecewise-linear colour ramp c0 -> c1 -> c2 over t in [0, 1].
    low = _mix(c0, c1, np.minimum(t * 2, 1))
    image = low + np.maximum(t * 2 - 1, 0)[..., None] * (c2 - c1)
    light = multiscale_noise(rng, height, width, cell, octaves=3)
    image *= (np.float32(0.85) + np.float32(0.3) * light)[..., None]
    image += rng.standard_normal((height, width, 1), dtype=np.float32) * np.float32(rng.uniform(1, 4))
    return image


_RENDERERS: Mapping[str, Callable[[np.random.Generator, int, int], np.ndarray]] = MappingProxyType(
    {
        "flat": _flat,
        "gradient": _gradient,
        "noise": _noise,
        "texture": _texture,
        "photo": _photo,
    }
)


def render_background(kind: str, rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A random background of one of `BACKGROUND_KINDS`: (height, width, 3) float32 RGB, in [0, 255].

    Example::

        image = render_background("photo", np.random.default_rng(0), 256, 256)
    """
    renderer = _RENDERERS.get(kind)
    if renderer is None:
        raise ValueError(f"unknown background kind {kind!r}; choose from {BACKGROUND_KINDS}")
    return np.clip(renderer(rng, height, width), 0, 255)
