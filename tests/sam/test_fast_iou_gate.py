"""The IoU gate of segment everything: the plain decoder's IoUs without per-prompt image tokens."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from grounded_sam.sam.fast.gated_decoding import decode_gated
from grounded_sam.sam.fast.iou_gate import gate_ious, supports_gate
from tests.sam.builders import random_sam


@pytest.fixture(scope="module")
def model():
    return random_sam(seed=4)


def _features(model, seed: int) -> torch.Tensor:
    """A random (1, C, 16, 16) image embedding."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(1, model.prompt_encoder.embed_dim, 16, 16, generator=generator)


def _prompts(model, count: int, multimask: bool, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    side = model.image_size
    encoder = model.prompt_encoder
    if multimask:
        coords = torch.rand(count, 1, 2, generator=generator) * side
        return encoder(points=(coords, torch.ones(count, 1, dtype=torch.int)), boxes=None, masks=None)
    corners = torch.rand(count, 2, 2, generator=generator) * side
    boxes = torch.cat([corners.min(1).values, corners.max(1).values], dim=1)
    return encoder(points=None, boxes=boxes, masks=None)


@pytest.mark.parametrize("multimask", [True, False])
@pytest.mark.parametrize("chunk_rows", [7, 64, 4096])  # 7 does not divide the 16 x 16 grid's 256 tokens
def test_gate_equals_the_plain_decoder(model, multimask, chunk_rows) -> None:
    features = _features(model, 1)
    sparse, dense = _prompts(model, 9, multimask)
    decoder, image_pe = model.mask_decoder, model.prompt_encoder.get_dense_pe()
    with torch.inference_mode():
        # One prompt at a time: the plain path then makes no shared projections, unlike the gate.
        plain = torch.cat(
            [
                decoder.iou_from_tokens(decoder.attend(features, image_pe, one, dense)[0], multimask)
                for one in sparse.split(1)
            ]
        )
        image = decoder.image_tokens(features, image_pe, dense)
        gated = gate_ious(decoder, image, sparse, multimask, chunk_rows=chunk_rows)
    assert gated.shape == plain.shape == (9, 3 if multimask else 1)
    assert plain.abs().max() > 0.05  # the check below is not vacuous
    torch.testing.assert_close(gated, plain, atol=1e-5, rtol=1e-5)


def test_gated_decoding_returns_what_the_plain_path_returns(model) -> None:
    features = _features(model, 2)
    coords = torch.rand(40, 1, 2, generator=torch.Generator().manual_seed(3)) * model.image_size
    points = (coords, torch.ones(40, 1, dtype=torch.int))
    with torch.inference_mode():
        all_iou, _, all_logits = decode_gated(model, features, points, None, 0.0)  # no gate, no filter
        threshold = float(np.median(all_iou.max(axis=1)))  # about half the prompts pass
        iou, rows, logits = decode_gated(model, features, points, None, threshold)
    expected = np.flatnonzero((all_iou > np.float32(threshold)).any(axis=1))
    assert 0 < len(rows) < 40
    np.testing.assert_array_equal(rows, expected)
    np.testing.assert_allclose(iou[rows], all_iou[rows], atol=1e-6)
    assert (iou.max(axis=1)[np.setdiff1d(np.arange(40), rows)] <= threshold).all()
    torch.testing.assert_close(logits, all_logits[torch.from_numpy(rows)], atol=1e-5, rtol=1e-5)


def test_gate_needs_one_shared_embedding(model) -> None:
    assert supports_gate(model.mask_decoder, torch.zeros(1, 32, 16, 16))
    assert not supports_gate(model.mask_decoder, torch.zeros(3, 32, 16, 16))


@pytest.mark.parametrize(("quantile", "gates_all"), [(0.95, True), (0.05, False)])
def test_the_gate_runs_on_every_prompt_only_when_a_probe_says_it_pays(
    model, monkeypatch, quantile, gates_all
) -> None:
    """A strict threshold gates every prompt; a loose one, which most of a probe passes, gates only the
    probe and decodes the rest the plain way. Either way the result is the plain path's."""
    from grounded_sam.sam import budgets
    from grounded_sam.sam.fast import gated_decoding

    features = _features(model, 5)
    count = 200
    coords = torch.rand(count, 1, 2, generator=torch.Generator().manual_seed(6)) * model.image_size
    points = (coords, torch.ones(count, 1, dtype=torch.int))
    gated_prompts = []

    def counting_gate(decoder, image, sparse, multimask):
        gated_prompts.append(len(sparse))
        return gate_ious(decoder, image, sparse, multimask)

    with torch.inference_mode():
        all_iou, _, all_logits = decode_gated(model, features, points, None, 0.0)
        threshold = float(np.quantile(all_iou.max(axis=1), quantile))
        monkeypatch.setattr(gated_decoding, "gate_ious", counting_gate)
        iou, rows, logits = decode_gated(model, features, points, None, threshold)
    assert sum(gated_prompts) == (count if gates_all else budgets.GATE_PROMPTS)
    expected = np.flatnonzero((all_iou > np.float32(threshold)).any(axis=1))
    np.testing.assert_array_equal(rows, expected)
    np.testing.assert_allclose(iou[rows], all_iou[rows], atol=1e-6)
    torch.testing.assert_close(logits, all_logits[torch.from_numpy(rows)], atol=1e-5, rtol=1e-5)


def test_a_workspace_skips_the_probe_once_it_found_that_gating_does_not_pay(model, monkeypatch) -> None:
    """The first batch of a loose threshold probes and finds the gate does not pay; the next batch of the
    same workspace decodes without gating at all, with the same result as without a workspace."""
    from grounded_sam.sam import budgets
    from grounded_sam.sam.fast import gated_decoding
    from grounded_sam.sam.fast.mask_decoder import Workspace

    features = _features(model, 7)
    coords = torch.rand(2, 100, 1, 2, generator=torch.Generator().manual_seed(8)) * model.image_size
    batches = [(batch, torch.ones(100, 1, dtype=torch.int)) for batch in coords]
    gated_prompts = []

    def counting_gate(decoder, image, sparse, multimask):
        gated_prompts.append(len(sparse))
        return gate_ious(decoder, image, sparse, multimask)

    workspace = Workspace()
    with torch.inference_mode():
        all_iou, _, _ = decode_gated(model, features, batches[0], None, 0.0)
        threshold = float(np.quantile(all_iou.max(axis=1), 0.05))
        expected = [decode_gated(model, features, points, None, threshold) for points in batches]
        monkeypatch.setattr(gated_decoding, "gate_ious", counting_gate)
        first = decode_gated(model, features, batches[0], None, threshold, workspace)
        assert gated_prompts == [budgets.GATE_PROMPTS] and workspace.gate_pays is False
        second = decode_gated(model, features, batches[1], None, threshold, workspace)
    assert gated_prompts == [budgets.GATE_PROMPTS]
    for (iou, rows, logits), (want_iou, want_rows, want) in zip([first, second], expected, strict=True):
        assert 0 < len(rows) < 100
        np.testing.assert_array_equal(rows, want_rows)
        np.testing.assert_array_equal(iou[rows], want_iou[rows])
        torch.testing.assert_close(logits, want, atol=0, rtol=0)
