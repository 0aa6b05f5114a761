"""SAM's training losses on mask logits: focal + dice for the masks, MSE for the predicted IoU.

Every function takes logits (N, ..., H, W) and boolean or 0/1 targets (N, H, W) at the same resolution
and returns one value per mask and candidate, so that the caller can pick the best of several candidates
(multimask output) before averaging.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

FOCAL_WEIGHT = 20.0
"""SAM's focal : dice ratio (20 : 1)."""


def focal_loss(
    logits: torch.Tensor, targets: torch.Tensor, alpha: float = 0.25, gamma: float = 2.0
) -> torch.Tensor:
    """Sigmoid focal loss averaged over the pixels of each mask.

    Args:
        logits: (N, C, H, W) mask logits (C candidates per target).
        targets: (N, H, W) bool or 0/1 ground truth.
        alpha: weight of the positive pixels (1 - alpha for the negative ones); negative disables it.
        gamma: focusing exponent.

    Returns:
        (N, C) mean focal loss per candidate.
    """
    target = targets.to(logits.dtype).unsqueeze(1).expand_as(logits)
    probs = logits.sigmoid()
    bce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    p_true = probs * target + (1 - probs) * (1 - target)
    loss = bce * (1 - p_true) ** gamma
    if alpha >= 0:
        loss = loss * (alpha * target + (1 - alpha) * (1 - target))
    return loss.flatten(2).mean(-1)


def dice_loss(logits: torch.Tensor, targets: torch.Tensor, smooth: float = 1.0) -> torch.Tensor:
    """Soft dice loss ``1 - (2 |P∩T| + s) / (|P| + |T| + s)`` on sigmoid probabilities.

    Args:
        logits: (N, C, H, W); targets: (N, H, W) bool or 0/1.

    Returns:
        (N, C) loss per candidate, in [0, 1).
    """
    probs = logits.sigmoid().flatten(2)
    target = targets.to(logits.dtype).flatten(1).unsqueeze(1)
    overlap = (probs * target).sum(-1)
    return 1 - (2 * overlap + smooth) / (probs.sum(-1) + target.sum(-1) + smooth)


def mask_iou(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """IoU of the binarised prediction (logit > 0) with the ground truth → (N, C), no gradient.

    Two empty masks have IoU 1.
    """
    with torch.no_grad():
        pred = (logits > 0).flatten(2)
        target = targets.bool().flatten(1).unsqueeze(1)
        inter = (pred & target).sum(-1).float()
        union = (pred | target).sum(-1).float()
        return torch.where(union > 0, inter / union.clamp(min=1), torch.ones_like(union))


def sam_loss(
    logits: torch.Tensor, iou_pred: torch.Tensor, targets: torch.Tensor
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """SAM's loss for one round of predictions, with the best candidate per target.

    Args:
        logits: (N, C, H, W) mask logits at the targets' resolution.
        iou_pred: (N, C) predicted IoUs.
        targets: (N, H, W) ground truth.

    Returns:
        the scalar loss (mask loss of the lowest-loss candidate per target, plus the IoU MSE of every
        candidate) and detached parts: ``focal``, ``dice``, ``iou_mse``, ``iou`` (mean real IoU of the
        chosen candidates) and ``best`` (N,) index of each chosen candidate.
    """
    focal = focal_loss(logits, targets)
    dice = dice_loss(logits, targets)
    per_candidate = FOCAL_WEIGHT * focal + dice
    best = per_candidate.detach().argmin(dim=1)
    rows = torch.arange(logits.shape[0], device=logits.device)
    real_iou = mask_iou(logits, targets)
    iou_mse = F.mse_loss(iou_pred, real_iou)
    loss = per_candidate[rows, best].mean() + iou_mse
    parts = {
        "focal": focal[rows, best].mean().detach(),
        "dice": dice[rows, best].mean().detach(),
        "iou_mse": iou_mse.detach(),
        "iou": real_iou[rows, best].mean(),
        "best": best,
    }
    return loss, parts
