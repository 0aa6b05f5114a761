"""grounded-sam app: the streamlit command line it runs."""

from __future__ import annotations

import subprocess
import sys

from typer.testing import CliRunner

from grounded_sam.cli import app
from grounded_sam.cli.streamlit_cmd import app_script, streamlit_command

runner = CliRunner()


def test_app_runs_streamlit_headless_on_the_given_port(monkeypatch) -> None:
    seen = {}

    def fake_call(command, env):
        seen["command"], seen["env"] = command, env
        return 0

    monkeypatch.setattr(subprocess, "call", fake_call)
    result = runner.invoke(app, ["app", "--port", "8642", "--max-upload-mb", "5"])
    assert result.exit_code == 0, result.output
    command = seen["command"]
    assert command[:4] == [sys.executable, "-m", "streamlit", "run"]
    assert command[4] == str(app_script()) and app_script().name == "streamlit_app.py"
    options = dict(zip(command[5::2], command[6::2], strict=True))
    assert options["--server.port"] == "8642" and options["--server.headless"] == "true"
    assert options["--server.maxUploadSize"] == "5"  # the box says 5 MB, as the app's label does
    assert seen["env"]["GROUNDED_SAM_APP_MAX_UPLOAD_MB"] == "5"


def test_exit_code_of_streamlit_is_passed_on(monkeypatch) -> None:
    monkeypatch.setattr(subprocess, "call", lambda command, env: 3)
    assert runner.invoke(app, ["app"]).exit_code == 3
    assert runner.invoke(app, ["app", "--port", "0"]).exit_code != 0


def test_command_line_shape() -> None:
    command = streamlit_command(app_script(), 1234, "127.0.0.1", 0.5)
    assert command[command.index("--server.address") + 1] == "127.0.0.1"
    assert command[command.index("--server.maxUploadSize") + 1] == "1"
    command = streamlit_command(app_script(), 1234, "127.0.0.1", 20.5)
    assert command[command.index("--server.maxUploadSize") + 1] == "21"
