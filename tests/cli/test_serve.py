"""``grounded-sam serve``: bad settings stop it before any model is loaded, with the reason."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from grounded_sam.cli import app

runner = CliRunner()


def test_a_missing_api_key_variable_stops_the_server(monkeypatch) -> None:
    monkeypatch.delenv("GSAM_NOT_SET", raising=False)
    result = runner.invoke(app, ["serve", "--api-key-env", "GSAM_NOT_SET"])
    assert result.exit_code == 2
    output = " ".join(result.output.split())  # rich wraps long lines
    assert "GSAM_NOT_SET" in output and "not set" in output


def test_files_root_must_be_a_folder(tmp_path) -> None:
    result = runner.invoke(app, ["serve", "--files-root", str(tmp_path / "absent")])
    assert result.exit_code == 2 and "not a folder" in " ".join(result.output.split())


@pytest.mark.parametrize("option", [["--max-queue", "-1"], ["--cache-images", "0"], ["--max-image-mb", "0"]])
def test_out_of_range_limits_are_refused(option) -> None:
    assert runner.invoke(app, ["serve", *option]).exit_code == 2


def test_missing_weights_stop_the_server_naming_the_file_and_the_option(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("GROUNDED_SAM_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    result = runner.invoke(app, ["serve", "--sam", "sam_vit_b"])
    said = " ".join(result.output.split())
    assert result.exit_code == 2 and "sam_vit_b_01ec64.pth" in said and str(tmp_path / "home") in said
    assert "pass --sam with the path" in said and "checkpoint=" not in said
