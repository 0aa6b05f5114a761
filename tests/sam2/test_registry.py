"""The SAM 2 registry: names, repositories, local folder names and unknown-name hints."""

from __future__ import annotations

import pytest

from grounded_sam.sam2.registry import get_sam2_spec, is_sam2_name, list_sam2_models


def test_every_release_is_registered_with_its_repository() -> None:
    names = list_sam2_models()
    assert len(names) == 8 and names == sorted(names)
    for version in ("sam2", "sam2.1"):
        for size in ("tiny", "small", "base_plus", "large"):
            spec = get_sam2_spec(f"{version}_hiera_{size}")
            assert spec.hf_repo_id == f"facebook/{version}-hiera-{size.replace('_', '-')}"
            assert spec.weights.is_snapshot and spec.weights.filename == spec.hf_repo_id.split("/")[1]
            assert spec.version == version[3:]


@pytest.mark.parametrize(
    ("name", "hint"),
    [("sam2.1_hiera_tinny", "'sam2.1_hiera_tiny'"), ("sam2-hiera-base-plus", "'sam2_hiera_base_plus'")],
)
def test_unknown_names_get_close_matches(name: str, hint: str) -> None:
    with pytest.raises(ValueError, match=f"unknown SAM 2 model '{name}'.*Did you mean.*{hint}"):
        get_sam2_spec(name)
    assert not is_sam2_name(name) and is_sam2_name("sam2.1_hiera_large")
