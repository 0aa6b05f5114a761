"""Device and precision handling shared by every model: one rule for the default device."""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Literal

import torch

Device = str | torch.device | None

Precision = Literal["float32", "bfloat16"]
PRECISIONS: tuple[str, ...] = ("float32", "bfloat16")


def check_precision(precision: str) -> Precision:
    """``precision`` if it is one of :data:`PRECISIONS`, else ValueError."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    return precision  # type: ignore[return-value]


def precision_context(precision: Precision, device: torch.device) -> AbstractContextManager[object]:
    """Autocast for ``precision`` on ``device``: "bfloat16" runs matrix products and attention in bfloat16
    (fast on GPUs and on CPUs with bfloat16 matrix units such as Intel AMX; LayerNorms stay float32),
    "float32" changes nothing."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=check_precision(precision) == "bfloat16")


def resolve_device(device: Device = None) -> torch.device:
    """``device`` as a ``torch.device``; ``None`` picks CUDA when available, else the CPU."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)
