"""The README's commands, prose spans and snippets parse; each command is run by a test of this package."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest
import typer

from grounded_sam.cli import app
from tests.readme.text import blocks, commands, inline_commands, shell_lines


def test_the_readme_has_its_commands_and_snippets() -> None:
    assert len(commands()) >= 14 and len(blocks("python")) >= 7 and len(blocks("yaml")) == 1
    assert shell_lines().count("bash .ci/run") == 1  # the two set-up commands, and only those
    assert sum(" && pip install -e . && " in line for line in shell_lines()) == 1


def _parse(command: str, whole: bool) -> None:
    """Resolve every option and argument of ``command`` as the command line would, without running it
    (``whole=False``: arguments may be left out, as prose does)."""
    group = typer.main.get_command(app)
    args = shlex.split(command)[1:]
    sub = group.get_command(None, args[0])  # type: ignore[arg-type]
    assert sub is not None, f"no sub-command {args[0]!r}: {command}"
    sub.make_context(args[0], args[1:], resilient_parsing=not whole)


@pytest.mark.parametrize("command", commands())
def test_every_readme_command_parses(command: str) -> None:
    _parse(command, whole=True)


@pytest.mark.parametrize("command", inline_commands())
def test_the_prose_names_real_commands_and_options(command: str) -> None:
    _parse(command, whole=False)


def test_every_readme_command_is_run_by_a_test() -> None:
    """A new README line needs its test: each ``grounded-sam`` line is one a module of this package runs."""
    source = "\n".join(path.read_text() for path in Path(__file__).parent.glob("*.py"))
    for command in commands():
        words = shlex.split(command)
        assert f'"{" ".join(words[:3])}' in source, command


@pytest.mark.parametrize("snippet", blocks("python"))
def test_every_readme_python_snippet_compiles(snippet: str) -> None:
    compile(snippet, "README.md", "exec")


# --- Set up ------------------------------------------------------------------------------------------
