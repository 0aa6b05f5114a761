"""Masks: IoU of paired masks."""

from __future__ import annotations

import numpy as np


def mask_ious(predicted: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """IoU of paired masks: predicted (N, H, W), targets (N, H, W) bool -> (N,) float64; empty∪empty -> 1."""
    inter = (predicted & targets).reshape(len(targets), -1).sum(1)
    union = (predicted | targets).reshape(len(targets), -1).sum(1)
    return np.where(union > 0, inter / np.maximum(union, 1), 1.0)
