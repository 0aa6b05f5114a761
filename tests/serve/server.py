"""Start ``grounded-sam serve`` in a subprocess on a free loopback port, for the tests and benchmarks."""

from __future__ import annotations

import contextlib
import io
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

STARTUP_SECONDS = 300  # loading the demo models on a busy 2-core machine


@dataclass(frozen=True)
class Server:
    url: str
    log: Path
    process: subprocess.Popen

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def running_server(log: Path, *args: str, env: dict[str, str] | None = None) -> Iterator[Server]:
    """``python -m grounded_sam.cli serve --host 127.0.0.1 --port FREE ARGS``, up until /health answers,
    stopped on exit. PYTHONPATH is inherited, so a worktree's code is what runs."""
    port = free_port()
    command = [sys.executable, "-m", "grounded_sam.cli", "serve", "--host", "127.0.0.1", "--port", str(port)]
    with log.open("wb") as out:
        process = subprocess.Popen(
            [*command, *args], env={**os.environ, **(env or {})}, stdout=out, stderr=subprocess.STDOUT
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, process, log)
        yield Server(url, log, process)
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def wait_healthy(
    url: str, process: subprocess.Popen, log: Path, seconds: float = STARTUP_SECONDS, name: str = "the server"
) -> None:
    """Wait until ``url/health`` answers 200; raise with the tail of ``log`` if ``process`` exits first or
    ``seconds`` pass."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{name} exited with {process.returncode}:\n{log.read_text()[-4000:]}")
        try:
            if httpx.get(f"{url}/health", timeout=5).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"{name} did not answer /health in {seconds:.0f} s:\n{log.read_text()[-4000:]}")


def png_bytes(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()
