"""The README's folder (one per test package run: its lines build on each other's outputs) and server."""

from __future__ import annotations

import shlex
from collections.abc import Iterator

import pytest

from tests.readme.text import SERVER_PORT, readme_line
from tests.readme.workspace import Folder, cli_command, prepare, started, stop


@pytest.fixture(scope="package")
def folder(tmp_path_factory) -> Iterator[Folder]:
    from grounded_sam.api import DETECTOR_ENV, SAM_ENV

    root = tmp_path_factory.mktemp("readme")
    home = root / "home"
    home.mkdir()
    (root / "work").mkdir()
    prepare(root / "work")
    with pytest.MonkeyPatch.context() as patch:
        for name in (SAM_ENV, DETECTOR_ENV):
            patch.delenv(name, raising=False)
        patch.setenv("GROUNDED_SAM_HOME", str(home))
        patch.setenv("HF_HUB_OFFLINE", "1")
        patch.setenv("HF_HOME", str(root / "hf"))
        patch.setenv("COLUMNS", "200")
        patch.chdir(root / "work")
        yield Folder(root / "work", home)


@pytest.fixture(scope="module")
def server(folder: Folder) -> Iterator[str]:
    """The Serve section's ``grounded-sam serve --port 8000`` on a free port: the same command as the
    command list's ``grounded-sam serve`` with ``--port`` given."""
    from tests.serve.server import free_port, wait_healthy

    port = str(free_port())
    line = readme_line("grounded-sam serve --port").rstrip("&").strip()
    argv = shlex.split(line.replace(SERVER_PORT, port))
    assert argv == [*shlex.split(readme_line("grounded-sam serve")), "--port", port]
    process = started(folder, [*cli_command(), *argv[1:]], "serve.log")
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, process, folder.path / "serve.log")
        yield url
    finally:
        stop(process)
