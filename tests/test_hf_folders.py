"""The shared loader of transformers-format model folders (grounded_sam/hf_folders.py)."""

from __future__ import annotations

import sys
import types

import pytest

from grounded_sam.hf_folders import (
    config_model_type,
    folder_or_repo,
    load_pretrained,
    refuse_missing_weights,
    transformers_classes,
)
from grounded_sam.weights import WeightsFileError, WeightsNotFoundError


def test_the_first_existing_alternative_is_taken_and_a_missing_class_names_the_version(monkeypatch) -> None:
    fake = types.ModuleType("transformers")
    fake.__version__ = "4.1.0"
    fake.NewProcessor = "new"
    fake.Model = "model"
    monkeypatch.setitem(sys.modules, "transformers", fake)
    assert transformers_classes("X", "9.9", "Model", "OldProcessor|NewProcessor") == ("model", "new")
    with pytest.raises(
        ImportError, match=r"transformers \(4\.1\.0\) has no Missing: X needs transformers >= 9\.9"
    ):
        transformers_classes("X", "9.9", "Model", "Missing|AlsoMissing")


@pytest.mark.parametrize(
    ("text", "expected"),
    [('{"model_type": "sam2"}', "sam2"), ("[1, 2]", None), ("{not json", None), (None, None)],
)
def test_config_model_type_reads_config_json_or_gives_none(tmp_path, text, expected) -> None:
    if text is not None:
        (tmp_path / "config.json").write_text(text)
    assert config_model_type(tmp_path) == expected


def test_folder_or_repo_keeps_paths_resolves_repo_ids_and_refuses_other_names(tmp_path) -> None:
    assert folder_or_repo(tmp_path, "org/model", "hint", lambda name: pytest.fail(name)) == tmp_path
    assert (
        folder_or_repo("org/model", "org/model", "hint", lambda name: tmp_path / name)
        == tmp_path / "org/model"
    )
    with pytest.raises(WeightsNotFoundError, match=r"'tiny' is neither a folder .* like 'org/model'; use x"):
        folder_or_repo("tiny", "org/model", "use x", lambda name: tmp_path)


class _Loader:
    def __init__(self, error: Exception | None) -> None:
        self.error = error

    def from_pretrained(self, folder, **kwargs):
        if self.error is not None:
            raise self.error
        return (folder, kwargs)


def test_load_pretrained_loads_offline_in_order_and_explains_failures(tmp_path) -> None:
    loaded = load_pretrained(tmp_path, "M", "lacks", _Loader(None), _Loader(None), extra=1)
    assert loaded == ((tmp_path, {"local_files_only": True, "extra": 1}),) * 2
    with pytest.raises(WeightsNotFoundError, match=r"is not complete \(no file\)\. see the docs$"):
        load_pretrained(tmp_path, "M", "is not complete", _Loader(OSError("no file")), note=". see the docs")
    with pytest.raises(WeightsFileError, match=r"cannot load M from .*EOFError"):
        load_pretrained(tmp_path, "M", "lacks", _Loader(EOFError("cut")))


def test_missing_or_reshaped_weights_are_refused(tmp_path) -> None:
    refuse_missing_weights({"missing_keys": [], "mismatched_keys": []}, tmp_path, _Loader, "advice")
    with pytest.raises(ValueError, match=r"lacks weights _Loader needs \(2 missing .*'a', 'b'.*; advice"):
        refuse_missing_weights({"missing_keys": ["b", "a"]}, tmp_path, _Loader, "advice")
