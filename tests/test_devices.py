"""Precision requests: "auto" follows the hardware's bfloat16 units, bfloat16 without them warns."""

from __future__ import annotations

import warnings

import pytest
import torch

from grounded_sam import devices
from grounded_sam.devices import CpuCapability, cpu_capability, has_bfloat16_units, resolve_precision
from grounded_sam.sam.everything import MaskGenerator
from grounded_sam.sam.predictor import SamPredictor
from tests.sam.builders import random_sam

CPU = torch.device("cpu")


def fake_cpu(monkeypatch, *, vector: str, amx: bool, avx512_bf16: bool) -> None:
    """Make the hardware queries answer as a CPU with these features (the env caps still apply)."""
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: vector)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: avx512_bf16)
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)


@pytest.mark.parametrize(
    ("vector", "amx", "avx512_bf16", "expected"),
    [
        ("AVX512", True, True, "bfloat16"),  # Sapphire Rapids and later: AMX tiles
        ("AVX512", False, True, "bfloat16"),  # AVX-512-BF16 without AMX (Zen 4): 0.58x float32's time
        ("AVX512", False, False, "float32"),
        ("AVX2", False, False, "float32"),
        ("AVX2", True, True, "float32"),  # an AMX CPU run as AVX2 (ATEN_CPU_CAPABILITY=avx2)
    ],
)
def test_auto_follows_the_bfloat16_units(monkeypatch, vector, amx, avx512_bf16, expected) -> None:
    fake_cpu(monkeypatch, vector=vector, amx=amx, avx512_bf16=avx512_bf16)
    assert resolve_precision("auto", CPU) == expected
    assert has_bfloat16_units(CPU) == (expected == "bfloat16")
    predictor = SamPredictor(random_sam(), precision="auto")
    assert predictor.precision == expected
    assert MaskGenerator(predictor.model, precision="auto").predictor.precision == expected


def test_onednn_isa_cap_hides_amx(monkeypatch) -> None:
    fake_cpu(monkeypatch, vector="AVX512", amx=True, avx512_bf16=True)
    assert cpu_capability() == CpuCapability("AVX512", amx=True, avx512_bf16=True)
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    assert cpu_capability() == CpuCapability("AVX512", amx=False, avx512_bf16=False)
    assert resolve_precision("auto", CPU) == "float32"
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX512_CORE_BF16")
    assert cpu_capability() == CpuCapability("AVX512", amx=False, avx512_bf16=True)
    assert resolve_precision("auto", CPU) == "bfloat16"
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "avx512_core_amx")
    assert resolve_precision("auto", CPU) == "bfloat16"
    assert str(cpu_capability()) == "AVX512, AMX yes, AVX512-BF16 yes"


def test_auto_on_cuda_asks_for_native_bfloat16(monkeypatch) -> None:
    asked = []

    def native(including_emulation: bool = True) -> bool:
        asked.append(including_emulation)
        return True

    monkeypatch.setattr(torch.cuda, "is_bf16_supported", native)
    assert resolve_precision("auto", torch.device("cuda")) == "bfloat16"
    assert asked == [False]  # emulated bfloat16 does not count
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: False)
    assert resolve_precision("auto", torch.device("cuda")) == "float32"
    assert resolve_precision("auto", torch.device("meta")) == "float32"


def test_bfloat16_without_units_warns_and_still_runs_bfloat16(monkeypatch) -> None:
    fake_cpu(monkeypatch, vector="AVX2", amx=False, avx512_bf16=False)
    with pytest.warns(UserWarning, match=r"AVX2, AMX no.*slower than in float32") as caught:
        assert resolve_precision("bfloat16", CPU) == "bfloat16"
    assert len(caught) == 1
    predictor = SamPredictor(random_sam())
    with pytest.warns(UserWarning, match="no bfloat16 matrix units"):
        predictor.precision = "bfloat16"
    assert predictor.precision == "bfloat16"
    predictor.set_image(torch.zeros(64, 48, 3, dtype=torch.uint8).numpy())
    with predictor.network_context():
        assert torch.is_autocast_enabled("cpu")  # what was asked is what runs


def test_bfloat16_with_units_and_float32_do_not_warn(monkeypatch) -> None:
    fake_cpu(monkeypatch, vector="AVX512", amx=True, avx512_bf16=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert resolve_precision("bfloat16", CPU) == "bfloat16"
        fake_cpu(monkeypatch, vector="AVX2", amx=False, avx512_bf16=False)
        assert resolve_precision("float32", CPU) == "float32"
        assert resolve_precision("auto", CPU) == "float32"


def test_the_warning_is_shown_once_per_process(monkeypatch) -> None:
    fake_cpu(monkeypatch, vector="AVX2", amx=False, avx512_bf16=False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.resetwarnings()
        warnings.simplefilter("default")  # Python's default: once per warning location
        monkeypatch.setattr(devices, "__warningregistry__", {}, raising=False)
        for _ in range(3):
            resolve_precision("bfloat16", CPU)
    assert len(caught) == 1


def test_unknown_requests_are_refused() -> None:
    for request in ("float16", "half", "", "AUTO"):
        with pytest.raises(ValueError, match="auto, float32, bfloat16"):
            resolve_precision(request, CPU)
