"""README.md read as data: its shell lines, ``grounded-sam`` commands and Python / YAML blocks."""

from __future__ import annotations

import re
from pathlib import Path

from grounded_sam.data import make_scene

README = Path(__file__).resolve().parents[2] / "README.md"
BLOCK = re.compile(r"```(\w+)\n(.*?)```", re.S)
SCENE = make_scene(2)  # orange square, green hexagon, green circle, red square: the README's photo.jpg
SERVER_PORT = "8000"


def blocks(language: str) -> list[str]:
    return [body for lang, body in BLOCK.findall(README.read_text()) if lang == language]


def shell_lines() -> list[str]:
    """Each line of the bash blocks, continuations joined, comments cut."""
    found = []
    for block in blocks("bash"):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split(" #")[0].strip()
            if line:
                found.append(line)
    return found


def commands() -> list[str]:
    """The ``grounded-sam ...`` lines (a trailing ``&`` cut)."""
    return [line.rstrip("&").strip() for line in shell_lines() if line.startswith("grounded-sam ")]


def inline_commands() -> list[str]:
    """``grounded-sam ...`` spans of the prose (spelling only: each names a real command and options)."""
    return [span for span in re.findall(r"`(grounded-sam [^`]+)`", README.read_text()) if " / " not in span]


def python_block(marker: str) -> str:
    """The one Python block of the README that holds ``marker``."""
    (found,) = [block for block in blocks("python") if marker in block]
    return found


def readme_line(prefix: str) -> str:
    """The one shell line of the README that is ``prefix``, else the one that starts with it."""
    lines = shell_lines()
    (found,) = [prefix] if prefix in lines else [line for line in lines if line.startswith(prefix)]
    return found


def flat(text: str) -> str:
    """Console output with its line wrapping undone."""
    return " ".join(text.split())
