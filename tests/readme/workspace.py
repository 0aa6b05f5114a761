"""The shared working folder the README's lines run in, and the servers they start."""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image
from typer.testing import CliRunner

from grounded_sam.cli import app
from grounded_sam.data import make_scene
from tests.readme.text import SCENE, blocks


@dataclass
class Folder:
    """The shared working folder: README lines run in it once each, in any order the tests ask."""

    path: Path
    home: Path
    ran: dict[str, tuple[int, str]] = field(default_factory=dict)

    def run(self, line: str) -> tuple[int, str]:
        """Exit status and output of the README's ``grounded-sam`` line, through the CLI in this process."""
        if line not in self.ran:
            result = CliRunner().invoke(app, shlex.split(line)[1:])
            self.ran[line] = (result.exit_code, result.output)
        return self.ran[line]


def prepare(folder: Path) -> None:
    """The inputs the README's lines name."""
    (folder / "photos" / "a").mkdir(parents=True)
    (folder / "images").mkdir()
    Image.fromarray(SCENE.image).save(folder / "photos" / "scene_2.jpg", quality=95)
    Image.fromarray(make_scene(3).image).save(folder / "photos" / "a" / "scene_3.jpg", quality=95)
    for seed in (5, 6):  # blue ring, green cross, yellow ring, ... / green ring, orange star
        Image.fromarray(make_scene(seed).image).save(folder / "images" / f"scene_{seed}.jpg", quality=95)
    Image.fromarray(SCENE.image).save(folder / "photo.jpg", quality=95)
    (folder / "onto.yaml").write_text(blocks("yaml")[0])
    write_clip(folder / "clip.mp4")


def write_clip(path: Path) -> None:
    import cv2

    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 5, SCENE.image.shape[1::-1])
    for _ in range(3):
        writer.write(np.ascontiguousarray(SCENE.image[:, :, ::-1]))
    writer.release()


def cli_command() -> list[str]:
    """The installed ``grounded-sam`` command (this interpreter's, so the worktree's code runs)."""
    script = Path(sys.executable).with_name("grounded-sam")
    return [str(script)] if script.is_file() else [sys.executable, "-m", "grounded_sam.cli"]


def started(folder: Folder, argv: list[str], log_name: str) -> subprocess.Popen:
    with (folder.path / log_name).open("wb") as log:
        return subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def stop(process: subprocess.Popen) -> None:
    """SIGINT to the command's own process group (the app's Streamlit child too), as Ctrl-C would."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGINT)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
