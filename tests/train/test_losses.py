import math

import pytest
import torch

from grounded_sam.train.losses import FOCAL_WEIGHT, dice_loss, focal_loss, mask_iou, sam_loss

LN2 = math.log(2.0)


def test_focal_loss_at_zero_logits_matches_hand_computation():
    logits = torch.zeros(1, 1, 2, 2)
    targets = torch.tensor([[[True, False], [False, False]]])
    # p = 0.5 everywhere: bce = ln 2, (1 - p_t)^2 = 1/4; alpha 0.25 on the positive, 0.75 on negatives.
    expected = (0.25 * 0.25 * LN2 + 3 * 0.75 * 0.25 * LN2) / 4
    assert focal_loss(logits, targets).item() == pytest.approx(expected, rel=1e-6)


def test_focal_loss_of_confident_errors_and_hits():
    logits = torch.tensor([[[[4.0, -4.0]]], [[[-4.0, 4.0]]]])
    targets = torch.tensor([[[True, False]], [[True, False]]])
    right, wrong = focal_loss(logits, targets, alpha=-1).flatten().tolist()
    p = 1 / (1 + math.exp(-4.0))
    assert right == pytest.approx(-math.log(p) * (1 - p) ** 2, rel=1e-5)
    assert wrong == pytest.approx(-math.log(1 - p) * p**2, rel=1e-5)


def test_dice_loss_matches_hand_computation():
    logits = torch.zeros(1, 1, 2, 2)
    targets = torch.tensor([[[True, False], [False, False]]])
    # overlap 0.5, sum(p) 2, sum(t) 1, smooth 1 -> 1 - (1 + 1) / (3 + 1)
    assert dice_loss(logits, targets).item() == pytest.approx(0.5)
    perfect = torch.where(targets, 30.0, -30.0).unsqueeze(1)
    assert dice_loss(perfect, targets).item() == pytest.approx(0.0, abs=1e-6)


def test_mask_iou_of_binarised_logits():
    targets = torch.zeros(1, 4, 4, dtype=torch.bool)
    targets[0, :2, :2] = True  # 4 pixels
    logits = torch.full((1, 2, 4, 4), -1.0)
    logits[0, 0, :2, :] = 1.0  # 8 pixels, 4 shared -> 0.5
    iou = mask_iou(logits, targets)
    assert iou.tolist() == [[0.5, 0.0]]
    assert mask_iou(torch.full((1, 1, 2, 2), -1.0), torch.zeros(1, 2, 2, dtype=torch.bool)).item() == 1.0


def test_sam_loss_takes_the_best_candidate_and_regresses_real_iou():
    torch.manual_seed(0)
    targets = torch.zeros(2, 8, 8, dtype=torch.bool)
    targets[:, 2:6, 2:6] = True
    logits = torch.randn(2, 3, 8, 8)
    logits[0, 1] = torch.where(targets[0], 20.0, -20.0)
    logits[1, 2] = torch.where(targets[1], 20.0, -20.0)
    logits.requires_grad_(True)
    iou_pred = torch.full((2, 3), 0.5, requires_grad=True)
    loss, parts = sam_loss(logits, iou_pred, targets)
    assert parts["best"].tolist() == [1, 2]
    real = mask_iou(logits, targets)
    expected_mse = ((0.5 - real) ** 2).mean()
    assert parts["iou_mse"].item() == pytest.approx(expected_mse.item(), rel=1e-6)
    assert parts["iou"].item() == pytest.approx(1.0)
    assert loss.item() == pytest.approx(
        expected_mse.item() + parts["dice"].item() + FOCAL_WEIGHT * parts["focal"].item(), rel=1e-5
    )
    loss.backward()
    # Only the chosen candidates receive a mask gradient.
    assert logits.grad[0, 0].abs().sum() == 0 and logits.grad[0, 2].abs().sum() == 0
    assert logits.grad[0, 1].abs().sum() > 0
    assert iou_pred.grad.abs().sum() > 0
