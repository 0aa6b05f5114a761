"""grounded_sam.registry.Registry: names, aliases and the answer to an unknown name."""

from __future__ import annotations

import pytest

from grounded_sam.registry import Registry


def test_names_aliases_and_close_matches() -> None:
    models = Registry(
        "SAM model", {"sam_vit_b": 1, "sam_vit_l": 2, "mobile_sam": 3}, aliases={"vit_b": "sam_vit_b"}
    )
    assert models.names() == ["mobile_sam", "sam_vit_b", "sam_vit_l"]
    assert models.get("sam_vit_l") == 2 and models.get("vit_b") == 1
    assert "vit_b" in models and "sam_vit_x" not in models and len(models) == 3
    with pytest.raises(
        ValueError,
        match=r"unknown SAM model 'sam_vit_bb'\. Did you mean 'sam_vit_b'.*"
        r"Known SAM models: mobile_sam, sam_vit_b, sam_vit_l",
    ):
        models.get("sam_vit_bb")
    with pytest.raises(ValueError) as error:
        models.get("zzz")
    assert "Did you mean" not in str(error.value)


def test_an_alias_to_nothing_is_refused() -> None:
    with pytest.raises(ValueError, match="aliases point to unregistered detector names"):
        Registry("detector", {"a": 1}, aliases={"b": "c"})
