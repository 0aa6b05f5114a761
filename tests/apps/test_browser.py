"""The app in a real browser: `grounded-sam app` on a free localhost port, driven by Debian's chromium
through Playwright (scripted pipeline). Upload, prompt, overlay and table, a refine click, the COCO
download (read back with pycocotools), and a screenshot of each tab under test-artifacts/."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.pipelines import SCENE

CHROMIUM = os.environ.get("GROUNDED_SAM_CHROMIUM", "/usr/bin/chromium")
ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
COMPONENT = 'iframe[title="streamlit_image_coordinates.streamlit_image_coordinates"]'

sync_api = pytest.importorskip(
    "playwright.sync_api", reason="playwright is not installed (pip install playwright)"
)
if not (Path(CHROMIUM).is_file() or shutil.which(CHROMIUM)):
    pytest.skip(f"no chromium at {CHROMIUM} (apt-get install chromium)", allow_module_level=True)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_healthy(url: str, server: subprocess.Popen, log: Path, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"the app exited with {server.returncode}:\n{log.read_text()}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as answer:
                if answer.read().strip() == b"ok":
                    return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(f"the app did not answer on {url} within {timeout:.0f} s:\n{log.read_text()}")


@pytest.fixture(scope="module")
def app_url(tmp_path_factory) -> Iterator[str]:
    """`grounded-sam app` serving the scripted pipeline on 127.0.0.1:<free port>; stopped afterwards."""
    port = _free_port()
    log = tmp_path_factory.mktemp("app") / "streamlit.log"
    env = {
        **os.environ,
        "GROUNDED_SAM_APP_PIPELINE": "tests.pipelines:truthful_pipeline",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        "HF_HUB_OFFLINE": "1",
    }
    env.pop("GROUNDED_SAM_INPAINT_MODEL", None)
    command = [sys.executable, "-c", "from grounded_sam.cli import app; app()", "app", "--port", str(port)]
    command += ["--host", "127.0.0.1"]
    with open(log, "w") as out:
        server = subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        _wait_healthy(f"http://127.0.0.1:{port}", server, log)
        yield f"http://127.0.0.1:{port}"
    finally:
        os.killpg(server.pid, signal.SIGTERM)  # the CLI and the streamlit process it started
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(timeout=20)


@pytest.fixture
def page(app_url: str) -> Iterator:
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": 1280, "height": 1600}, accept_downloads=True)
        page = context.new_page()
        page.set_default_timeout(60_000)
        page.goto(app_url)
        yield page
        context.close()
        browser.close()


def _settled(page) -> None:
    """Wait until Streamlit has finished its script run and dropped the elements of the previous one."""
    page.wait_for_timeout(300)
    page.wait_for_function(
        """() => {
            const status = document.querySelector('[data-testid="stStatusWidget"]');
            const running = status !== null && status.innerText.includes('Running');
            return !running && document.querySelectorAll('[data-stale="true"]').length === 0;
        }"""
    )


def _images_loaded(page) -> None:
    page.wait_for_function("() => Array.from(document.images).every(i => i.complete && i.naturalWidth > 0)")


def _pixel_of(index: int) -> tuple[int, int]:
    """An (x, y) pixel of SCENE where instance ``index`` is drawn on top, away from its edges."""
    import cv2

    from tests.ui.results import scene_result

    owner = (scene_result().instance_map() == index).astype(np.uint8)
    ys, xs = np.nonzero(cv2.erode(owner, np.ones((7, 7), np.uint8)))
    middle = len(ys) // 2
    return int(xs[middle]), int(ys[middle])


def test_text_to_masks_refine_and_download_in_chromium(page, tmp_path) -> None:
    from pycocotools.coco import COCO

    ARTIFACTS.mkdir(exist_ok=True)
    scene_png = tmp_path / "scene.png"
    Image.fromarray(SCENE.image).save(scene_png)
    page.get_by_text("Text → masks").wait_for()
    page.get_by_text("Model: custom pipeline tests.pipelines:truthful_pipeline").wait_for()

    page.get_by_test_id("stSidebar").get_by_text("Upload", exact=True).click()
    page.locator('input[type="file"]').set_input_files(str(scene_png))
    page.get_by_text("scene.png: 160×120").wait_for()
    _settled(page)

    prompt = page.get_by_label("What to find")
    prompt.fill(". ".join(dict.fromkeys(SCENE.labels)))
    prompt.press("Enter")
    _settled(page)
    page.get_by_role("button", name="Run", exact=True).click()
    page.get_by_text(f"Found {len(SCENE.labels)} instance(s)").wait_for()

    # The overlay (a clickable image) and the instance table with a toggle per instance.
    overlay = page.frame_locator(COMPONENT).locator("#image")
    overlay.wait_for()
    table = page.get_by_test_id("stTable")
    for label in SCENE.labels:
        assert table.get_by_text(label, exact=True).count() >= 1
    assert page.get_by_text("Show #0", exact=False).count() == 1
    # At a 1280-px window the clickable image fills its column, all of it inside the frame and the window.
    shown = overlay.bounding_box()
    frame = page.locator(COMPONENT).bounding_box()
    column = page.locator('[data-testid="stColumn"]').filter(has=page.locator(COMPONENT)).bounding_box()
    assert shown is not None and frame is not None and column is not None
    assert shown["x"] + shown["width"] <= min(frame["x"] + frame["width"], 1280) + 1
    assert shown["width"] == pytest.approx(column["width"], abs=24) and shown["width"] > 160  # enlarged
    assert shown["height"] == pytest.approx(shown["width"] * 120 / 160, abs=2)  # not cropped or squashed
    scale = shown["width"] / 160

    # A click on instance #2 (the list still says #0) refines #2: the point goes to the server, the
    # instance is re-decoded and becomes the one chosen.
    clicked = _pixel_of(2)
    start = time.perf_counter()
    overlay.click(position={"x": scale * (clicked[0] + 0.5), "y": scale * (clicked[1] + 0.5)})
    page.get_by_text("1 point(s) on #2").wait_for()
    round_trip = time.perf_counter() - start
    refine_caption = page.get_by_text("Last refine:").inner_text()
    _settled(page)
    _images_loaded(page)
    print(f"refine click round trip {round_trip * 1000:.0f} ms in the browser; server: {refine_caption}")
    page.screenshot(path=str(ARTIFACTS / "app_text_tab.png"), full_page=True)

    with page.expect_download() as download_info:
        page.get_by_role("button", name="COCO json").first.click()
    coco_path = tmp_path / "download.coco.json"
    download_info.value.save_as(coco_path)
    assert download_info.value.suggested_filename == "scene.coco.json"
    coco = COCO(str(coco_path))
    assert len(coco.getAnnIds()) == len(SCENE.labels)
    assert (coco.imgs[1]["height"], coco.imgs[1]["width"]) == (120, 160)
    assert {c["name"] for c in coco.loadCats(coco.getCatIds())} == set(SCENE.labels)
    assert json.loads(coco_path.read_text())["images"][0]["file_name"] == "scene.png"

    page.get_by_role("tab", name="Everything").click()
    for name in ("Min predicted IoU", "Min stability"):  # a random SAM is never confident
        page.get_by_role("slider", name=name).focus()
        page.keyboard.press("Home")
    _settled(page)
    page.get_by_role("button", name="Segment everything").click()
    page.get_by_text("mask(s).", exact=False).wait_for()
    _settled(page)
    _images_loaded(page)
    page.get_by_test_id("stDataFrame").locator("canvas").first.wait_for()
    page.wait_for_timeout(1000)  # the data grid paints its canvas after it is attached
    page.screenshot(path=str(ARTIFACTS / "app_everything_tab.png"), full_page=True)

    page.get_by_role("tab", name="Inpaint").click()
    page.get_by_role("button", name="Inpaint", exact=True).click()
    page.get_by_text("After").wait_for()
    _images_loaded(page)
    page.screenshot(path=str(ARTIFACTS / "app_inpaint_tab.png"), full_page=True)

    # A rejected upload leaves nothing of the previous image or its results on screen.
    (tmp_path / "broken.png").write_bytes(b"not an image at all")
    page.locator('input[type="file"]').set_input_files(str(tmp_path / "broken.png"))
    page.get_by_test_id("stAlert").filter(has_text="broken.png").first.wait_for()
    _settled(page)
    assert page.get_by_text("scene.png: 160×120").count() == 0
    assert page.locator(COMPONENT).count() == 0 and page.get_by_test_id("stTable").count() == 0
