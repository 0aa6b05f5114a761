"""Validation of `Result` fields on construction: coerce what can be coerced, else raise with the
expected and actual shape."""

from __future__ import annotations

from typing import Any

import numpy as np


def to_numpy(x: Any) -> np.ndarray:
    """A numpy array of `x` (torch tensors are detached and moved to the CPU)."""
    if hasattr(x, "detach"):  # torch tensor, possibly on an accelerator
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def check_image_size(size: Any) -> tuple[int, int]:
    """(H, W) as two positive ints."""
    try:
        h, w = (int(v) for v in size)
    except (TypeError, ValueError) as e:
        raise ValueError(f"image_size must be (H, W), two positive ints; got {size!r}") from e
    if h <= 0 or w <= 0:
        raise ValueError(f"image_size must be (H, W), two positive ints; got {size!r}")
    return h, w


def check_masks(masks: Any, image_size: tuple[int, int]) -> np.ndarray:
    """(N, H, W) bool masks from bool or 0/1 numbers."""
    arr = to_numpy(masks)
    if arr.ndim != 3 or arr.shape[1:] != image_size:
        raise ValueError(f"masks must have shape (N, {image_size[0]}, {image_size[1]}); got {arr.shape}")
    if arr.dtype == bool:
        return arr
    if arr.dtype.kind not in "iuf" or not np.isin(arr, (0, 1)).all():
        raise TypeError(
            f"masks must be boolean (or 0/1 numbers); got dtype {arr.dtype} with other values, "
            "threshold them first (e.g. logits > 0)"
        )
    return arr.astype(bool)


def check_floats(values: Any, name: str, shape: tuple[int, ...]) -> np.ndarray:
    """Finite float32 values of `shape`."""
    arr = to_numpy(values)
    if arr.size == 0 and shape[0] == 0:
        arr = arr.reshape(shape)  # accept [] or np.zeros(0) for an empty result
    if arr.shape != shape:
        expected = "(N, 4)" if len(shape) == 2 else "(N,)"
        raise ValueError(f"{name} must have shape {expected} = {shape} to match the masks; got {arr.shape}")
    if arr.dtype.kind not in "iuf":
        raise TypeError(f"{name} must be real numbers; got dtype {arr.dtype}")
    arr = arr.astype(np.float32, copy=False)
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    return arr


def check_labels(labels: Any, n: int) -> list[str]:
    """N label strings."""
    if isinstance(labels, str):
        raise TypeError(f"labels must be a list of N strings, not one string ({labels!r}); wrap it in a list")
    out = list(labels)
    if len(out) != n:
        raise ValueError(f"labels must have length N = {n} to match the masks; got {len(out)}")
    for label in out:
        if not isinstance(label, str):
            raise TypeError(f"labels must be strings; got {type(label).__name__} {label!r}")
    return [str(label) for label in out]
