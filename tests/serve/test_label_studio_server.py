"""A real Label Studio server (PyPI ``label-studio``, in its own venv, SQLite, on loopback) using
``grounded-sam serve`` as its ML backend: create a BrushLabels project, connect the backend, upload a
task image, ask for predictions, export, and decode the exported brushes with label_studio_sdk."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator

import httpx
import numpy as np
import pytest
from label_studio_sdk.converter import brush

from tests.serve.conftest import SCENE, SCENE_PNG
from tests.serve.server import free_port, running_server, wait_healthy
from tests.tool_venvs import tool_python

pytestmark = pytest.mark.slow

LABEL_STUDIO = "label-studio==1.23.2"
TOKEN = "0123456789abcdef0123456789abcdef01234567"  # a legacy (non-JWT) user token
CONFIG = """<View>
  <Image name="image" value="$image"/>
  <BrushLabels name="tag" toName="image">
    <Label value="Ring" predicted_values="green ring"/>
    <Label value="Cross" predicted_values="red cross"/>
  </BrushLabels>
</View>"""


@pytest.fixture(scope="module")
def label_studio(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    python = tool_python("label-studio-server", [LABEL_STUDIO])
    data = tmp_path_factory.mktemp("label_studio")
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")},
        "LABEL_STUDIO_BASE_DATA_DIR": str(data),
        "DJANGO_DB": "sqlite",
        "LABEL_STUDIO_DISABLE_SIGNUP_WITHOUT_LINK": "true",
        "SSRF_PROTECTION_ENABLED": "false",  # the ML backend is on loopback
        "ML_BLOCK_LOCAL_IP": "false",
        "LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN": "true",  # the --user-token is a legacy token
    }
    command = [
        str(python.parent / "label-studio"),
        "start",
        "--no-browser",
        "--host",
        "127.0.0.1",
        "--internal-host",
        "127.0.0.1",
        "--port",
        str(port),
        "--data-dir",
        str(data),
        "--username",
        "test@example.com",
        "--password",
        "test-password-1",
        "--user-token",
        TOKEN,
    ]
    log = data / "label_studio.log"
    with log.open("wb") as out:
        process = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, process, log, seconds=600, name="label-studio")
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()


def test_label_studio_gets_labelled_brush_predictions(label_studio, tmp_path) -> None:
    import grounded_sam

    env = {"LABEL_STUDIO_URL": label_studio, "LABEL_STUDIO_API_KEY": TOKEN}
    with (
        running_server(tmp_path / "backend.log", env=env) as backend,
        httpx.Client(base_url=label_studio, headers={"Authorization": f"Token {TOKEN}"}, timeout=600) as ls,
    ):
        project = ls.post("/api/projects", json={"title": "grounded-sam", "label_config": CONFIG})
        assert project.status_code == 201, project.text
        project_id = project.json()["id"]
        connected = ls.post(
            "/api/ml", json={"url": f"{backend.url}/label-studio", "project": project_id, "title": "gsam"}
        )
        assert connected.status_code == 201, connected.text
        ml_id = connected.json()["id"]
        imported = ls.post(
            f"/api/projects/{project_id}/import", files={"file": ("scene.png", SCENE_PNG, "image/png")}
        )
        assert imported.status_code == 201, imported.text
        asked = ls.post(
            "/api/dm/actions",
            params={"id": "retrieve_tasks_predictions", "project": project_id},
            json={"selectedItems": {"all": True, "excluded": []}},
        )
        assert asked.status_code == 200, asked.text
        exported = ls.get(
            f"/api/projects/{project_id}/export", params={"exportType": "JSON", "download_all_tasks": "true"}
        )
        assert exported.status_code == 200, exported.text
        (task,) = exported.json()
        assert len(task["predictions"]) == 1  # the export refers to the prediction by id
        predictions = ls.get("/api/predictions/", params={"task": task["id"]})
        assert predictions.status_code == 200, predictions.text
        backend_log = backend.log_text()
        assert ml_id and "POST /label-studio/predict 200" in backend_log, backend_log[-3000:]

    (prediction,) = predictions.json()
    assert prediction["model_version"].startswith("grounded-sam-")
    regions = prediction["result"]
    expected = grounded_sam.predict(SCENE.image, "green ring. red cross")
    names = {"green ring": "Ring", "red cross": "Cross"}
    assert [r["value"]["brushlabels"] for r in regions] == [[names[label]] for label in expected.labels]
    decoded = [
        brush.decode_rle(r["value"]["rle"]).reshape(r["original_height"], r["original_width"], 4)[..., 3]
        == 255
        for r in regions
    ]
    assert np.array_equal(np.stack(decoded), expected.masks)
