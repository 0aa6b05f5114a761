"""The int8 encoder's MLPs: first layer and GELU in one oneDNN kernel, as close to float32 as before."""

from __future__ import annotations

import platform

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from grounded_sam.sam.fast.int8 import Int8Linear, int8_encoder
from grounded_sam.sam.fast.int8_gelu import Int8LinearGelu, fuse_gelus
from grounded_sam.sam.modeling.common import FeedForward
from grounded_sam.sam.modeling.tiny_vit import NormMlp
from tests.sam.builders import TINY_TINYVIT_SAM, random_sam

pytestmark = pytest.mark.skipif(
    platform.machine().lower() not in ("x86_64", "amd64"), reason="the int8 encoder runs on x86 CPUs only"
)


def test_the_fused_layer_is_the_int8_product_then_the_exact_gelu() -> None:
    torch.manual_seed(0)
    linear = nn.Linear(96, 200)
    x = torch.randn(2, 5, 7, 96) * 2 + 0.5  # asymmetric inputs: a non-zero zero point
    with torch.inference_mode():
        exact = F.gelu(linear(x))
        fused = Int8LinearGelu(linear)(x)
        unfused = F.gelu(Int8Linear.from_linear(linear)(x))
    assert fused.shape == exact.shape and fused.dtype == torch.float32
    error = ((fused - exact).norm() / exact.norm()).item()
    assert 1e-4 < error < 0.03, error  # quantized, and still close
    torch.testing.assert_close(fused, unfused, atol=0.02, rtol=0.01)  # the same 7-bit input quantization
    assert ((fused - unfused).norm() / unfused.norm()).item() < 1e-3


def test_only_exact_gelu_mlps_are_fused() -> None:
    exact, tanh, relu = FeedForward(8, 16), FeedForward(8, 16), FeedForward(8, 16, act=nn.ReLU)
    tanh.act = nn.GELU(approximate="tanh")
    tiny = NormMlp(8, 16)
    container = nn.ModuleList([exact, tanh, relu, tiny])
    fuse_gelus(container)
    assert isinstance(exact.lin1, Int8LinearGelu) and isinstance(exact.act, nn.Identity)
    assert isinstance(tiny.fc1, Int8LinearGelu) and isinstance(tiny.act, nn.Identity)
    assert type(tanh.lin1) is nn.Linear and type(relu.lin1) is nn.Linear  # other activations stay


@pytest.mark.parametrize("accelerate", [True, False], ids=["fast", "plain"])
def test_the_int8_encoders_fuse_every_mlp_and_leave_the_float_model_alone(accelerate: bool) -> None:
    for model in (random_sam(accelerate=accelerate), random_sam(TINY_TINYVIT_SAM)):
        quantized = int8_encoder(model.image_encoder)
        mlps = [m for m in quantized.modules() if isinstance(m, FeedForward | NormMlp)]
        assert mlps and all(isinstance(m.act, nn.Identity) for m in mlps)
        firsts = [m.lin1 if isinstance(m, FeedForward) else m.fc1 for m in mlps]
        assert all(isinstance(first, Int8LinearGelu) for first in firsts)
        floats = [m for m in model.image_encoder.modules() if isinstance(m, FeedForward | NormMlp)]
        assert all(isinstance(m.act, nn.GELU) for m in floats)
