"""Device and precision handling shared by every model: one rule for the default device, one for the
precision a request such as ``"auto"`` resolves to, and the one place that asks the hardware whether it
has bfloat16 matrix units."""

from __future__ import annotations

import os
import platform
import warnings
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Literal

import torch

Device = str | torch.device | None

Precision = Literal["float32", "bfloat16", "int8"]
PRECISIONS: tuple[str, ...] = ("float32", "bfloat16", "int8")
PrecisionRequest = Literal["auto", "float32", "bfloat16", "int8"]
PRECISION_REQUESTS: tuple[str, ...] = ("auto", *PRECISIONS)

# oneDNN ISA caps (ONEDNN_MAX_CPU_ISA) under which its bfloat16 kernels have matrix units to run on.
_BF16_ONEDNN_ISAS = ("AVX512_CORE_AMX", "AVX10", "ALL", "DEFAULT")


@dataclass(frozen=True)
class CpuCapability:
    """What this process's CPU kernels can use: ``vector`` is torch's dispatch level
    (``torch.backends.cpu.get_cpu_capability()``, e.g. "AVX2", "AVX512"), ``amx`` whether Intel AMX tiles
    are present and not capped away (``ONEDNN_MAX_CPU_ISA``), ``avx512_bf16`` likewise for the AVX-512
    bfloat16 dot-product instructions."""

    vector: str
    amx: bool
    avx512_bf16: bool

    def __str__(self) -> str:
        yes = {True: "yes", False: "no"}
        return f"{self.vector}, AMX {yes[self.amx]}, AVX512-BF16 {yes[self.avx512_bf16]}"


def cpu_capability() -> CpuCapability:
    """The CPU's capability as torch and oneDNN will use it in this process (env caps included:
    ``ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2`` makes an AVX-512 machine an AVX2 one)."""
    vector = torch.backends.cpu.get_cpu_capability()
    isa_cap = os.environ.get("ONEDNN_MAX_CPU_ISA", "ALL").upper()
    wide = vector.startswith("AVX512")
    amx = wide and torch.cpu._is_amx_tile_supported() and isa_cap.startswith(_BF16_ONEDNN_ISAS)
    bf16 = (
        wide
        and torch.cpu._is_avx512_bf16_supported()
        and isa_cap.startswith(("AVX512_CORE_BF16", "AVX512_CORE_FP16", *_BF16_ONEDNN_ISAS))
    )
    return CpuCapability(vector, amx, bf16)


def has_bfloat16_units(device: torch.device) -> bool:
    """Whether bfloat16 matrix products on ``device`` run on dedicated units, i.e. faster than float32:
    a CUDA GPU with native bfloat16 (Ampere or later), a CPU with Intel AMX or AVX-512-BF16.

    AVX-512-BF16 counts: on an AMD EPYC (Zen 4, no AMX) it encodes with ViT-B in 0.58x float32's CPU time
    (``benchmarks/bench_sam.py``). Without either (plain AVX2, or an ISA capped by the environment),
    bfloat16 is emulated and several times slower than float32.
    """
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported(including_emulation=False)
    if device.type == "cpu":
        capability = cpu_capability()
        return capability.amx or capability.avx512_bf16
    return False


def check_precision(precision: str) -> Precision:
    """``precision`` if it is one of :data:`PRECISIONS`, else ValueError."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    return precision  # type: ignore[return-value]


def resolve_precision(precision: str, device: torch.device) -> Precision:
    """The precision to run in for a request of :data:`PRECISION_REQUESTS` on ``device``.

    ``"auto"`` is bfloat16 where the device has bfloat16 matrix units (:func:`has_bfloat16_units`) and
    float32 elsewhere; it never picks ``"int8"``, which changes the results more. An explicit
    ``"bfloat16"`` on a device without them is kept, with a UserWarning (once per process) that it will be
    slower than float32. ``"int8"`` (the image encoder's linear layers in int8) exists only on x86 CPUs:
    elsewhere ValueError (:func:`check_int8_device`). Anything else raises ValueError.
    """
    if precision not in PRECISION_REQUESTS:
        raise ValueError(f"precision must be one of {', '.join(PRECISION_REQUESTS)}, got {precision!r}")
    if precision == "int8":
        check_int8_device(device)
    if precision == "auto":
        return "bfloat16" if has_bfloat16_units(device) else "float32"
    if precision == "bfloat16" and not has_bfloat16_units(device):
        # Issued from this one line, so Python's default filter shows it once per process.
        warnings.warn(_slow_bfloat16_message(device), UserWarning, stacklevel=1)
    return precision  # type: ignore[return-value]


def check_int8_device(device: torch.device) -> None:
    """ValueError unless ``device`` can run the int8 image encoder: a CPU with x86 int8 kernels (fbgemm).

    The int8 encoder (:mod:`grounded_sam.sam.fast.int8`) runs on fbgemm's x86 kernels; a GPU, or a CPU of
    another architecture (ARM), is told to use float32 or bfloat16 instead.
    """
    machine = platform.machine().lower()
    x86 = machine in ("x86_64", "amd64", "i686", "x86")
    if device.type != "cpu" or not x86 or "fbgemm" not in torch.backends.quantized.supported_engines:
        where = f"this {machine} CPU" if device.type == "cpu" else f"device {device}"
        raise ValueError(
            f"precision='int8' runs only on x86 CPUs (fbgemm int8 kernels), not on {where}; "
            "use precision='float32', or 'bfloat16' / 'auto' on a GPU"
        )


def _slow_bfloat16_message(device: torch.device) -> str:
    where = f"this CPU ({cpu_capability()})" if device.type == "cpu" else f"{device}"
    return (
        f"precision='bfloat16' on {where}, which has no bfloat16 matrix units (AMX or AVX-512-BF16, or a GPU "
        "with native bfloat16): the network will run several times slower than in float32 (3.5-6x on an "
        "AVX2 CPU); use precision='auto' or 'float32'"
    )


def precision_context(precision: Precision, device: torch.device) -> AbstractContextManager[object]:
    """Autocast for ``precision`` on ``device``: "bfloat16" runs matrix products and attention in bfloat16
    (fast on GPUs and on CPUs with bfloat16 matrix units such as Intel AMX; LayerNorms stay float32),
    "float32" and "int8" change nothing (int8 is a different image encoder, not a context)."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=check_precision(precision) == "bfloat16")


def resolve_device(device: Device = None) -> torch.device:
    """``device`` as a ``torch.device``; ``None`` picks CUDA when available, else the CPU."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)
