"""The Review page in a real browser: `grounded-sam review DATASET` on a free localhost port, driven by
Debian's chromium through Playwright. Approve, reject and relabel with the mouse and the keyboard, refine
an instance with a click on the image, then export from the page and check the exported COCO dataset; a
screenshot goes to test-artifacts/."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator

import numpy as np
import pytest

from grounded_sam.labeling.review import ReviewSession
from tests.apps.test_browser import (
    ARTIFACTS,
    CHROMIUM,
    CHROMIUM_ARGS,
    COMPONENT,
    ROOT,
    _free_port,
    _settled,
    _wait_healthy,
    sync_api,
)
from tests.apps.test_review_page import CLASSES, decisions, labelled_dataset
from tests.pipelines import SCENE


@pytest.fixture(scope="module")
def served(tmp_path_factory) -> Iterator[tuple[str, object]]:
    """`grounded-sam review` on a labelled dataset, scripted pipeline, 127.0.0.1:<free port>."""
    root = tmp_path_factory.mktemp("review")
    dataset = labelled_dataset(root)
    port = _free_port()
    log = root / "streamlit.log"
    env = {
        **os.environ,
        "GROUNDED_SAM_APP_PIPELINE": "tests.pipelines:scripted_pipeline",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        "HF_HUB_OFFLINE": "1",
    }
    command = [sys.executable, "-c", "from grounded_sam.cli import app; app()", "review", str(dataset)]
    command += ["--port", str(port), "--host", "127.0.0.1"]
    with open(log, "w") as out:
        server = subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        _wait_healthy(f"http://127.0.0.1:{port}", server, log)
        yield f"http://127.0.0.1:{port}", dataset
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(timeout=20)


def test_approve_reject_relabel_and_export_in_chromium(served, tmp_path) -> None:
    from pycocotools.coco import COCO

    url, dataset = served
    first = ReviewSession(dataset).images[0]
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1400})
        page.set_default_timeout(30_000)
        page.goto(url)
        page.get_by_text(f"{first} — 0 of", exact=False).wait_for()
        _settled(page)

        page.get_by_role("button", name="Approve").click()  # instance #0
        page.get_by_text("1 of", exact=False).wait_for()
        _settled(page)
        page.get_by_text("#1 ", exact=False).first.click()
        _settled(page)
        page.get_by_role("heading", name="Review").click()  # shortcuts are off while a widget has focus
        page.keyboard.press("x")  # the reject shortcut, on instance #1
        page.get_by_text("2 of", exact=False).wait_for()
        _settled(page)
        page.get_by_text("#2 ", exact=False).first.click()
        _settled(page)
        other = next(name for name in CLASSES if name != SCENE.labels[2])
        page.get_by_test_id("stSelectbox").filter(has_text="Class").first.click()
        page.get_by_role("option", name=other, exact=True).click()
        _settled(page)
        page.get_by_role("button", name="Change class").click()
        page.get_by_text("3 of", exact=False).wait_for()
        _settled(page)
        # a click on the picture, on a pixel of one instance only, refines that instance with SAM
        k, (x, y) = _pixel_of_one_instance(dataset, first)
        picture = page.frame_locator(COMPONENT).locator("#image")
        scale = picture.bounding_box()["width"] / SCENE.image.shape[1]
        picture.click(position={"x": scale * (x + 0.5), "y": scale * (y + 0.5)})
        page.get_by_text(f"Refined #{k}: (", exact=False).wait_for()
        _settled(page)
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "app_review.png"), full_page=True)

        page.get_by_text("Export the reviewed dataset").click()
        target = tmp_path / "reviewed"
        field = page.get_by_label("Output folder (new or empty)")
        field.fill(str(target))
        field.press("Enter")
        _settled(page)
        page.get_by_role("button", name="Export", exact=True).click()
        page.get_by_text(f"Wrote {target}", exact=False).wait_for()
        browser.close()

    assert [(d["rel"], d["index"], d["action"]) for d in decisions(dataset)] == [
        (first, 0, "approve"),
        (first, 1, "reject"),
        (first, 2, "relabel"),
        (first, k, "refine"),
    ]
    (clicked,) = decisions(dataset)[-1]["points"]  # the page's pixel of the click: within a pixel
    assert abs(clicked[0] - x - 0.5) <= 1 and abs(clicked[1] - y - 0.5) <= 1 and clicked[2] == 1
    coco = COCO(str(target / "annotations" / "instances_train.json"))
    names = {c["id"]: c["name"] for c in coco.loadCats(coco.getCatIds())}
    anns = coco.loadAnns(coco.getAnnIds())
    expected = [SCENE.labels[0], other] + ([SCENE.labels[k]] if k not in (0, 2) else [])
    assert sorted(names[a["category_id"]] for a in anns) == sorted(expected)


def _pixel_of_one_instance(dataset, rel: str) -> tuple[int, tuple[int, int]]:
    """(index, (x, y)) of a pixel that lies in the mask of one live (not rejected) instance only."""
    from grounded_sam.ops.rle import rle_to_mask

    live = [inst for inst in ReviewSession(dataset).instances(rel) if inst.status != "rejected"]
    masks = np.stack([rle_to_mask(inst.mask) for inst in live])
    alone = masks & (masks.sum(axis=0) == 1)
    j = int(np.flatnonzero(alone.any(axis=(1, 2)))[0])
    ys, xs = np.nonzero(alone[j])
    return live[j].index, (int(xs[len(xs) // 2]), int(ys[len(ys) // 2]))
