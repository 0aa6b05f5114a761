"""One server for the whole tests/serve package (loading the models is the slow part), with an API key,
no waiting room (``--max-queue 0``, so a second concurrent model call gets 503), a 1 MB image limit,
a folder of task files, and a stand-in for Label Studio's file storage."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import numpy as np
import pytest

from grounded_sam.data import SceneConfig, make_scene
from tests.serve.server import Server, png_bytes, running_server

API_KEY = "test-key-7f3a"
LABEL_STUDIO_TOKEN = "ls-token-5521"
SCENE = make_scene(3, SceneConfig(size=(240, 320)))
SCENE_PNG = png_bytes(SCENE.image)
MAX_IMAGE_MB = 1.0


class _Storage(BaseHTTPRequestHandler):
    """Label Studio's ``/data/upload/...`` (token required) and a public ``/public/...`` image."""

    def do_GET(self) -> None:
        needs_token = self.path.startswith("/data/")
        if needs_token and self.headers.get("Authorization") != f"Token {LABEL_STUDIO_TOKEN}":
            self.send_response(401)
            self.end_headers()
            return
        if self.path.endswith("/scene.png"):
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.send_header("Content-Length", str(len(SCENE_PNG)))
            self.end_headers()
            self.wfile.write(SCENE_PNG)
            return
        self.send_response(404)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="session")
def storage() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Storage)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(scope="session")
def files_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("task_files")
    (root / "scenes").mkdir()
    (root / "scenes" / "scene.png").write_bytes(SCENE_PNG)
    return root


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory, files_root: Path, storage: str) -> Iterator[Server]:
    log = tmp_path_factory.mktemp("server") / "server.log"
    env = {"GSAM_TEST_KEY": API_KEY, "LABEL_STUDIO_URL": storage, "LABEL_STUDIO_API_KEY": LABEL_STUDIO_TOKEN}
    args = ["--api-key-env", "GSAM_TEST_KEY", "--max-queue", "0", "--max-image-mb", str(MAX_IMAGE_MB)]
    args += ["--max-pixels", "4000000", "--cache-images", "2", "--files-root", str(files_root)]
    with running_server(log, *args, env=env) as running:
        yield running


@pytest.fixture(scope="session")
def client(server: Server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, headers={"X-API-Key": API_KEY}, timeout=600) as session:
        yield session


@pytest.fixture(scope="session")
def scene_prediction():
    """What ``grounded_sam.predict`` gives in this process for the scene and the prompt "shapes"."""
    import grounded_sam
    from grounded_sam.io import load_image_bytes

    pixels = load_image_bytes(SCENE_PNG)
    assert np.array_equal(pixels, SCENE.image)
    return grounded_sam.predict(pixels, "shapes")
