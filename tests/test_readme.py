"""Every ``grounded-sam`` command of the README names a real sub-command with real options, and every
Python snippet compiles.

This checks the commands' spelling, not their run: most need files (photos/, clip.mp4) or weights that
cannot exist here; the commands that do run offline are run by their own CLI tests.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import typer

from grounded_sam.cli import app

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCK = re.compile(r"```(\w+)\n(.*?)```", re.S)


def _blocks(language: str) -> list[str]:
    return [body for lang, body in BLOCK.findall(README.read_text()) if lang == language]


def _commands() -> list[str]:
    """Each ``grounded-sam ...`` line of the bash blocks, continuations joined, comments and ``&`` cut."""
    found = []
    for block in _blocks("bash"):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split(" #")[0].strip().rstrip("&").strip()
            if line.startswith("grounded-sam "):
                found.append(line)
    return found


def _expand(command: str) -> list[str]:
    """``grounded-sam demo / eval / train-demo`` stands for three commands."""
    words = command.split()
    if "/" not in words:
        return [command]
    return [f"grounded-sam {name}" for name in " ".join(words[1:]).split(" / ")]


COMMANDS = [one for command in _commands() for one in _expand(command)]


def test_the_readme_has_commands_and_snippets() -> None:
    assert len(COMMANDS) >= 10 and len(_blocks("python")) >= 4


@pytest.mark.parametrize("command", COMMANDS)
def test_every_readme_command_parses(command: str) -> None:
    group = typer.main.get_command(app)
    args = shlex.split(command)[1:]
    sub = group.get_command(None, args[0])  # type: ignore[arg-type]
    assert sub is not None, f"no sub-command {args[0]!r}: {command}"
    # Parsing resolves every option and argument as the command line would, without running anything.
    sub.make_context(args[0], args[1:], resilient_parsing=False)


@pytest.mark.parametrize("snippet", _blocks("python"))
def test_every_readme_python_snippet_compiles(snippet: str) -> None:
    compile(snippet, "README.md", "exec")
