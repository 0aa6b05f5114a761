"""The SAM 2 / 2.1 checkpoints as data: one entry per released Hiera size, each a Hugging Face snapshot."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from grounded_sam.registry import Registry
from grounded_sam.weights import WeightsSpec

Sam2Version = Literal["2", "2.1"]


@dataclass(frozen=True)
class Sam2Spec:
    """A registered SAM 2 checkpoint.

    Attributes:
        name: the registered name, e.g. ``sam2.1_hiera_tiny``.
        hf_repo_id: the Hugging Face repository holding the ``transformers`` weights and processor files.
        version: ``"2"`` (July 2024) or ``"2.1"`` (September 2024, better on small and occluded objects).
        size: the Hiera image encoder's size.
        params: the parameter count as published.
    """

    name: str
    hf_repo_id: str
    version: Sam2Version
    size: str
    params: str

    @property
    def weights(self) -> WeightsSpec:
        """The whole repository, kept under ``$GROUNDED_SAM_HOME`` in a folder named after it."""
        return WeightsSpec(
            filename=self.hf_repo_id.rsplit("/", 1)[-1], source_format="hf", hf_repo_id=self.hf_repo_id
        )

    @property
    def description(self) -> str:
        return f"SAM {self.version} with a Hiera-{self.size} image encoder ({self.params} parameters)"


_SIZES = (("tiny", "38.9M"), ("small", "46M"), ("base-plus", "80.8M"), ("large", "224.4M"))


def _release(version: Sam2Version, size: str, params: str) -> Sam2Spec:
    """One released checkpoint: names use underscores (``sam2.1_hiera_base_plus``), repositories dashes."""
    prefix = f"sam{version}"
    return Sam2Spec(
        name=f"{prefix}_hiera_{size.replace('-', '_')}",
        hf_repo_id=f"facebook/{prefix}-hiera-{size}",
        version=version,
        size=size,
        params=params,
    )


_SPECS: dict[str, Sam2Spec] = {
    spec.name: spec
    for spec in (_release(version, size, params) for version in ("2", "2.1") for size, params in _SIZES)
}
_REGISTRY: Registry[Sam2Spec] = Registry("SAM 2 model", _SPECS, cutoff=0.5)

DEFAULT_SAM2 = "sam2.1_hiera_tiny"


def list_sam2_models() -> list[str]:
    """Names of every registered SAM 2 / 2.1 checkpoint, sorted."""
    return _REGISTRY.names()


def is_sam2_name(name: str) -> bool:
    """Whether ``name`` is a registered SAM 2 checkpoint (lets callers route ``--sam`` values)."""
    return name in _REGISTRY


def get_sam2_spec(name: str) -> Sam2Spec:
    """The registered entry called ``name``; unknown names are answered with the closest matches."""
    return _REGISTRY.get(name)
