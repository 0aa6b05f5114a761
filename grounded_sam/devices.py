"""Device handling shared by every model: one rule for the default device."""

from __future__ import annotations

import torch

Device = str | torch.device | None


def resolve_device(device: Device = None) -> torch.device:
    """``device`` as a ``torch.device``; ``None`` picks CUDA when available, else the CPU."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)
