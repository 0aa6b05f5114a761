"""Feed-forward blocks in bands of rows and with fused activations equal the plain blocks."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from grounded_sam.text.gdino_mlp import FusedMLP, feed_forward_in_bands, fusable_activation, linear_activation
from tests.text.gdino_builders import tiny_model


@pytest.mark.parametrize("band_rows", [1, 5, 12, 13, 1000])
def test_bands_equal_the_whole_block(band_rows) -> None:
    torch.manual_seed(0)
    fc1, fc2 = nn.Linear(6, 24), nn.Linear(24, 6)
    tokens = torch.randn(2, 13, 6)
    with torch.inference_mode():
        expected = fc2(torch.relu(fc1(tokens)))
        got = feed_forward_in_bands(tokens, fc1, torch.relu, fc2, band_bytes=band_rows * 24 * 4)
    assert got.shape == (2, 13, 6)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-6)


@pytest.mark.parametrize(
    ("activation", "kind"),
    [
        (nn.ReLU(), "relu"),
        (F.relu, "relu"),
        (nn.GELU(), "gelu"),
        (nn.GELU(approximate="tanh"), None),
        (nn.SiLU(), None),
        (torch.tanh, None),
    ],
)
def test_fused_activation_equals_layer_then_activation(activation, kind) -> None:
    assert fusable_activation(activation) == kind
    torch.manual_seed(0)
    layer = nn.Linear(8, 32)
    tokens = torch.randn(3, 7, 8) * 3
    with torch.inference_mode():
        got = linear_activation(tokens, layer, activation)
    torch.testing.assert_close(got, activation(layer(tokens)), rtol=0, atol=1e-5)
    # with gradients the plain route runs and stays differentiable
    tokens.requires_grad_(True)
    linear_activation(tokens, layer, activation).sum().backward()
    assert tokens.grad is not None and tokens.grad.abs().sum() > 0


def test_transformers_gelu_wrapper_is_fused_and_swin_mlp_equals_the_original() -> None:
    swin = tiny_model().model.backbone.conv_encoder.model
    original = next((m for m in swin.modules() if type(m).__name__ == "SwinMLP"), None)
    if original is None:
        pytest.skip("transformers 4.x has no SwinMLP module")
    assert fusable_activation(original.activation_fn) == "gelu"
    fused = FusedMLP(original)
    assert fused.fc1 is original.fc1 and not fused.training
    tokens = torch.randn(2, 50, original.fc1.in_features)
    with torch.inference_mode():
        torch.testing.assert_close(fused(tokens), original(tokens), rtol=0, atol=1e-6)


@pytest.mark.parametrize("onednn", [True, False])
def test_fused_kernel_runs_unless_onednn_is_switched_off(monkeypatch, onednn) -> None:
    if onednn and not torch.backends.mkldnn.is_available():
        pytest.skip("torch built without oneDNN")
    monkeypatch.setattr(torch.backends.mkldnn, "enabled", onednn)
    calls = []
    activation = nn.ReLU()
    activation.register_forward_hook(lambda *args: calls.append(1))
    with torch.inference_mode():
        linear_activation(torch.randn(3, 4), nn.Linear(4, 8), activation)
    assert calls == ([] if onednn else [1])  # the activation module runs only on the plain route
