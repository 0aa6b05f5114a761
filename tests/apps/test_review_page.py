"""The Review page driven by AppTest on a dataset labelled by the scripted pipeline: every action
(approve, reject, relabel, navigation, re-prompt by phrase and by click, export) and reopening."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from pycocotools.coco import COCO
from streamlit.testing.v1 import AppTest

from grounded_sam.data import write_scene
from grounded_sam.labeling import label_dataset
from grounded_sam.labeling.review import REVIEW_FILE, ReviewSession
from grounded_sam.ui.models import PIPELINE_ENV
from grounded_sam.ui.review import REVIEW_ENV
from tests.pipelines import SCENE, scripted_pipeline

APP = str(Path(__file__).resolve().parents[2] / "apps" / "streamlit_app.py")
CLASSES = list(dict.fromkeys(SCENE.labels))


def labelled_dataset(root: Path) -> Path:
    """Two copies of SCENE labelled with its own classes by the scripted pipeline."""
    images = root / "images"
    for name in ("a", "b"):
        write_scene(SCENE, images / f"{name}.png")
        (images / f"{name}.json").unlink()
    out = root / "ds"
    label_dataset(images, CLASSES, out, pipeline=scripted_pipeline(), model_id="scripted")
    return out


@pytest.fixture
def dataset(tmp_path) -> Path:
    return labelled_dataset(tmp_path)


def open_app(monkeypatch, dataset: Path) -> AppTest:
    monkeypatch.setenv(PIPELINE_ENV, "tests.pipelines:scripted_pipeline")
    monkeypatch.setenv(REVIEW_ENV, str(dataset))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    at = AppTest.from_file(APP, default_timeout=120)
    at.run()
    assert not at.exception, at.exception
    return at


def decisions(dataset: Path) -> list[dict]:
    path = dataset / REVIEW_FILE
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def current(at: AppTest) -> str:
    caption = next(c.value for c in at.caption if c.value.startswith("Image "))
    return caption.split("): ", 1)[1].split(" — ")[0]


def test_page_opens_on_the_most_doubtful_image(monkeypatch, dataset) -> None:
    at = open_app(monkeypatch, dataset)
    assert at.sidebar.radio(key="page").value == "Review"
    assert at.title[0].value == "Review"
    session = ReviewSession(dataset)
    assert current(at) == session.images[0]
    assert f"0 of {2 * len(SCENE.labels)} instances decided" in next(
        c.value for c in at.caption if "decided" in c.value
    )


def test_approve_reject_relabel_and_navigate(monkeypatch, dataset) -> None:
    at = open_app(monkeypatch, dataset)
    rel = current(at)
    at.button(key="review_approve").click().run()
    at.radio(key=f"review_pick-{rel}").set_value(1).run()
    at.button(key="review_reject").click().run()
    at.radio(key=f"review_pick-{rel}").set_value(2).run()
    other = next(name for name in CLASSES if name != SCENE.labels[2])
    at.selectbox(key=f"review_class-{rel}-2").set_value(other).run()
    at.button(key="review_relabel").click().run()
    assert not at.exception, at.exception
    assert [(d["index"], d["action"], d["class"]) for d in decisions(dataset)] == [
        (0, "approve", SCENE.labels[0]),
        (1, "reject", SCENE.labels[1]),
        (2, "relabel", other),
    ]
    assert "3 of" in next(c.value for c in at.caption if "decided" in c.value)
    at.button(key="review_next").click().run()
    assert current(at) != rel
    at.button(key="review_prev").click().run()
    assert current(at) == rel
    assert [b.key for b in at.button if b.key in ("review_approve", "review_reject", "review_next")]
    # reopening (a new browser session) starts at the first image with an undecided instance
    reopened = open_app(monkeypatch, dataset)
    assert current(reopened) == ReviewSession(dataset).images[ReviewSession(dataset).first_open()]


def test_reprompt_by_phrase_and_by_click(monkeypatch, dataset) -> None:
    at = open_app(monkeypatch, dataset)
    rel = current(at)
    before = len(ReviewSession(dataset).instances(rel))
    at.selectbox(key="review_add_class").set_value(CLASSES[0]).run()
    at.text_input(key=f"review_phrase-{rel}").set_value(SCENE.labels[1]).run()  # one of it in SCENE
    at.button(key="review_find").click().run()
    assert not at.exception, at.exception
    assert any("Added 1 instance(s)" in c.value for c in at.caption)
    x0, y0, x1, y1 = SCENE.boxes[0]
    at.number_input(key="review_x").set_value(float(x0 + x1) / 2)
    at.number_input(key="review_y").set_value(float(y0 + y1) / 2).run()
    at.button(key="review_point").click().run()
    assert not at.exception, at.exception
    added = [d for d in decisions(dataset) if d["action"] == "add"]
    assert [d["via"] for d in added] == [
        f"phrase: {SCENE.labels[1]}",
        f"click {(x0 + x1) / 2:.0f},{(y0 + y1) / 2:.0f}",
    ]
    assert [d["index"] for d in added] == [before, before + 1]
    assert len(ReviewSession(dataset).instances(rel)) == before + 2


def test_export_from_the_page(monkeypatch, dataset, tmp_path) -> None:
    at = open_app(monkeypatch, dataset)
    at.button(key="review_approve").click().run()
    target = tmp_path / "reviewed"
    at.text_input(key="review_export_dir").set_value(str(target))
    at.selectbox(key="review_export_format").set_value("coco").run()
    at.button(key="review_export").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    coco = COCO(str(target / "annotations" / "instances_train.json"))
    assert len(coco.getAnnIds()) == 1  # only the approved instance
    at.button(key="review_export").click().run()
    assert "not empty" in at.error[0].value


def test_review_command_exports_with_the_documented_flag(dataset, tmp_path) -> None:
    from typer.testing import CliRunner

    from grounded_sam.cli import app

    session = ReviewSession(dataset)
    session.decide(session.images[0], 0, "approve")
    runner = CliRunner()
    done = runner.invoke(app, ["review", str(dataset), "--export", str(tmp_path / "y"), "-f", "yolo"])
    assert done.exit_code == 0, done.output
    assert "approved and edited labels (1 of 8 decided)" in " ".join(done.output.split())
    lines = [p.read_text().splitlines() for p in (tmp_path / "y" / "labels").rglob("*.txt")]
    assert sum(map(len, lines)) == 1
    done = runner.invoke(
        app, ["review", str(dataset), "--export", str(tmp_path / "all"), "--include-unreviewed"]
    )
    assert done.exit_code == 0, done.output
    coco = COCO(str(tmp_path / "all" / "annotations" / "instances_train.json"))
    assert len(coco.getAnnIds()) == 2 * len(SCENE.labels)
    missing = runner.invoke(app, ["review", str(tmp_path / "nothing"), "--export", str(tmp_path / "z")])
    assert missing.exit_code == 2 and "holds no dataset" in " ".join(missing.output.split())


def test_a_click_on_an_instance_refines_it_with_sam(monkeypatch, dataset) -> None:
    from grounded_sam.io import load_image
    from grounded_sam.ops.rle import rle_to_mask

    at = open_app(monkeypatch, dataset)
    rel = current(at)
    session = ReviewSession(dataset)
    before = session.instances(rel)
    masks = np.stack([rle_to_mask(inst.mask) for inst in before])
    alone = masks & (masks.sum(axis=0) == 1)  # pixels of one instance only
    k = int(np.flatnonzero(alone.any(axis=(1, 2)))[0])
    ys, xs = np.nonzero(alone[k])
    x, y = float(xs[len(xs) // 2]), float(ys[len(ys) // 2])
    at.number_input(key="review_x").set_value(x)
    at.number_input(key="review_y").set_value(y).run()
    at.button(key="review_refine_point").click().run()
    assert not at.exception, at.exception
    assert any(f"Refined #{k}: ({x:.0f}, {y:.0f}) added to it" in c.value for c in at.caption)
    (line,) = decisions(dataset)
    assert (line["index"], line["action"], line["points"]) == (k, "refine", [[x, y, 1]])
    assert at.radio(key=f"review_pick-{rel}").value == k  # the refined instance is selected
    # what SAM draws from the instance's box and the click, decoded on its own
    sam = scripted_pipeline().predictor
    sam.set_image(load_image(session.image_path(rel)))
    expected, score, _ = sam.predict(
        point_coords=np.array([[x, y]], np.float32),
        point_labels=np.array([1]),
        box=np.array(before[k].box, np.float32),
        multimask_output=False,
    )
    refined = ReviewSession(dataset).instances(rel)[k]
    np.testing.assert_array_equal(rle_to_mask(refined.mask), expected[0])
    assert refined.status == "approved" and refined.mask_score == pytest.approx(float(score[0]), abs=1e-5)
    # a second, negative click on the same instance: both clicks are SAM's prompt
    at.checkbox(key="review_negative").check().run()
    at.button(key="review_refine_point").click().run()
    assert decisions(dataset)[-1]["points"] == [[x, y, 1], [x, y, 0]]
    assert any("removed from it" in c.value for c in at.caption)
    # on the background: a negative click says so, a positive one adds a new object
    outside = np.argwhere(~masks.any(axis=0) & ~boxes_cover(before, masks.shape[1:]))
    by, bx = (float(v) for v in outside[len(outside) // 2])
    at.number_input(key="review_x").set_value(bx)
    at.number_input(key="review_y").set_value(by).run()
    at.button(key="review_refine_point").click().run()
    assert any("No instance at" in c.value for c in at.caption) and len(decisions(dataset)) == 2
    at.checkbox(key="review_negative").uncheck().run()
    at.button(key="review_refine_point").click().run()
    assert not at.exception, at.exception
    assert decisions(dataset)[-1]["action"] == "add" and decisions(dataset)[-1]["index"] == len(before)


def boxes_cover(instances, size) -> np.ndarray:
    covered = np.zeros(size, dtype=bool)
    for inst in instances:
        x0, y0, x1, y1 = (round(v) for v in inst.box)
        covered[y0:y1, x0:x1] = True
    return covered
