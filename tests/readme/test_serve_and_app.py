"""The Serve section's lines and snippet against the real server, and the app and Review page starting."""

from __future__ import annotations

import hashlib
import json
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

from PIL import Image

from tests.readme.text import SCENE, SERVER_PORT, python_block, readme_line
from tests.readme.workspace import Folder, cli_command, started, stop


def test_the_serve_lines(folder: Folder, server: str) -> None:
    """The python line writes scene.png, curl posts it and gets both phrases back as COCO RLE masks."""
    bash = shutil.which("bash") or "/bin/bash"
    write = readme_line("python -c")
    subprocess.run([bash, "-c", write.replace("python ", f"{shlex.quote(sys.executable)} ", 1)], check=True)
    assert Image.open("scene.png").size == SCENE.image.shape[1::-1]
    curl = readme_line("curl ").replace(f":{SERVER_PORT}", f":{server.rsplit(':', 1)[1]}")
    if shutil.which("curl"):
        answer = json.loads(subprocess.run(shlex.split(curl), capture_output=True, check=True).stdout)
    else:  # the same request with httpx
        import httpx

        with open("scene.png", "rb") as image:
            answer = httpx.post(
                f"{server}/v1/segment",
                files={"image": image},
                data={"prompt": "red square. green circle"},
                timeout=120,
            ).json()
    assert sorted(d["label"] for d in answer["detections"]) == ["green circle", "red square"], answer
    assert answer["image_id"] == hashlib.sha256(Path("scene.png").read_bytes()).hexdigest()
    assert (answer["height"], answer["width"]) == SCENE.image.shape[:2]
    assert all(d["mask"]["size"] == list(SCENE.image.shape[:2]) for d in answer["detections"])


def test_the_httpx_snippet(folder: Folder, server: str) -> None:
    snippet = python_block("httpx.Client(").replace(f":{SERVER_PORT}", f":{server.rsplit(':', 1)[1]}")
    namespace: dict[str, object] = {}
    exec(compile(snippet, "README.md", "exec"), namespace)
    masks = namespace["masks"]
    assert len(masks) == 1 and masks[0].shape == SCENE.image.shape[:2] and masks[0].any()
    assert namespace["refined"]["cache_hit"] is True


def _app_answers(folder: Folder, line: str, log_name: str) -> None:
    """``line`` on a free loopback port answers Streamlit's health check, then stops on Ctrl-C."""
    from tests.serve.server import free_port, wait_healthy

    port = str(free_port())
    argv = [*shlex.split(line), "--port", port, "--host", "127.0.0.1"]
    process = started(folder, [*cli_command(), *argv[1:]], log_name)
    try:
        wait_healthy(f"http://127.0.0.1:{port}/_stcore", process, folder.path / log_name, name=line)
    finally:
        stop(process)
    assert process.returncode == 0, (folder.path / log_name).read_text()


def test_the_app_starts(folder: Folder) -> None:
    _app_answers(folder, readme_line("grounded-sam app"), "app.log")


def test_the_review_page_starts(folder: Folder) -> None:
    """The review line without ``--export`` (its comment: the Review page) on the labelled dataset."""
    folder.run(readme_line("grounded-sam label images/ --classes"))
    line = readme_line("grounded-sam review dataset --export").split(" --export")[0]
    assert line == "grounded-sam review dataset"
    _app_answers(folder, line, "review.log")
