"""Separate virtual environments for the tools users load our outputs with (datumaro, label-studio-sdk,
fiftyone, ultralytics) when they pin packages that would change the project's own (numpy, opencv, pillow).

A venv is created once per tool under ``$GROUNDED_SAM_TOOL_VENVS`` (default
``~/.cache/grounded_sam/tool-venvs``) with the pinned requirements, and reused while they are unchanged.
Tests that use one are ``slow``: the first run downloads the packages from PyPI.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import venv
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(os.environ.get("GROUNDED_SAM_TOOL_VENVS", Path.home() / ".cache" / "grounded_sam" / "tool-venvs"))


def tool_python(name: str, requirements: list[str], *, inherit: bool = False) -> Path:
    """The python of a venv named `name` with `requirements` installed (created on first use); skips
    the test with the pip output when the packages cannot be installed (no index reachable).

    With `inherit`, the project's own site-packages are appended to the venv's path (after its own), so
    that a tool needing torch reuses the installed one instead of downloading another.
    """
    folder = ROOT / name
    python = folder / "bin" / "python"
    stamp = folder / "requirements.sha256"
    wanted = hashlib.sha256("\n".join([*requirements, f"inherit={inherit}"]).encode()).hexdigest()
    if python.is_file() and stamp.is_file() and stamp.read_text() == wanted:
        return python
    venv.EnvBuilder(with_pip=True, clear=True).create(folder)
    if inherit:
        (own,) = folder.glob("lib/python*/site-packages")
        shared = [p for p in sys.path if p.endswith("site-packages") and Path(p).is_dir()]
        (own / "zz_project_packages.pth").write_text("".join(p + "\n" for p in shared))
    done = subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", *requirements],
        capture_output=True,
        text=True,
        timeout=1800,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot install {requirements} into {folder}: {done.stderr[-2000:]}")
    stamp.write_text(wanted)
    return python


def run_tool(python: Path, script: str, *args: str, timeout: float = 600) -> Any:
    """Run `script` (Python source) with the tool's python; it prints one JSON document, returned here."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    done = subprocess.run(
        [str(python), "-c", script, *args], capture_output=True, text=True, timeout=timeout, env=env
    )
    assert done.returncode == 0, f"{python} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return json.loads(done.stdout.strip().splitlines()[-1])


__all__ = ["ROOT", "run_tool", "tool_python"]
