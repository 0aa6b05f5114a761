"""The Streamlit page driven by AppTest on a scripted pipeline: examples, uploads, run, toggles, refine,
everything, inpaint and downloads."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from streamlit.testing.v1 import AppTest

from grounded_sam.result import Result
from grounded_sam.ui import actions
from grounded_sam.ui.models import PIPELINE_ENV
from tests.apps.recorded import encoder_calls
from tests.pipelines import SCENE
from tests.ui.results import scene_result

APP = str(Path(__file__).resolve().parents[2] / "apps" / "streamlit_app.py")
PROMPT = ". ".join(dict.fromkeys(SCENE.labels))


def _png(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture
def app(monkeypatch) -> AppTest:
    monkeypatch.setenv(PIPELINE_ENV, "tests.apps.recorded:recorded_pipeline")
    monkeypatch.delenv("GROUNDED_SAM_INPAINT_MODEL", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    at = AppTest.from_file(APP, default_timeout=120)
    at.run()
    assert not at.exception, at.exception
    return at


def _state(at: AppTest):
    return at.session_state["app"]


def _upload_scene(at: AppTest) -> None:
    at.sidebar.radio(key="source").set_value("Upload").run()
    at.sidebar.file_uploader(key="upload").set_value(("scene.png", _png(SCENE.image), "image/png")).run()
    assert not at.error, [e.value for e in at.error]


def _run(at: AppTest, prompt: str = PROMPT) -> None:
    state = _state(at)
    at.text_input(key=f"prompt-{state.image_key}").set_value(prompt)
    at.button(key="run").click().run()
    assert not at.exception, at.exception


def test_example_is_shown_with_the_model_in_use_and_a_suggested_prompt(app) -> None:
    captions = [c.value for c in app.sidebar.caption]
    assert "Model: custom pipeline tests.apps.recorded:recorded_pipeline (on cpu)" in captions
    assert any(c.startswith("Objects in this example: ") for c in captions)
    state = _state(app)
    assert state.image.shape == (240, 320, 3) and state.image_name == "Shapes on a gradient.png"
    prompt = app.text_input(key=f"prompt-{state.image_key}").value
    assert prompt and prompt.split(". ")[0] in captions[-1]
    assert [t.label for t in app.tabs] == ["Text", "Everything", "Inpaint"]
    first_key = state.image_key
    app.sidebar.selectbox(key="example").set_value("Crowded shapes").run()
    assert _state(app).image_name == "Crowded shapes.png" and _state(app).image_key != first_key


def test_upload_run_table_toggles_and_downloads(app) -> None:
    _upload_scene(app)
    np.testing.assert_array_equal(_state(app).image, SCENE.image)
    _run(app)
    state = _state(app)
    assert len(state.result) == len(SCENE.labels)
    assert any(c.value.startswith(f"Found {len(SCENE.labels)} instance(s)") for c in app.caption)
    table = app.table[0].value
    assert list(table["label"]) == SCENE.labels and table["shown"].all()
    assert [d.label for d in app.get("download_button")] == ["Masks (PNG zip)", "COCO json", "Overlay PNG"]

    app.checkbox(key=f"show-{state.generation}-0").uncheck().run()
    assert not _state(app).shown[0] and _state(app).visible().labels == SCENE.labels[1:]
    assert not app.table[0].value["shown"][0]


def test_refine_points_reuse_the_embedding(app) -> None:
    _upload_scene(app)
    _run(app)
    calls = encoder_calls()
    state = _state(app)
    app.selectbox(key=f"refine-target-{state.generation}").set_value(1).run()
    x1, y1, x2, y2 = SCENE.boxes[1]
    app.number_input(key="point_x").set_value(float(x1 + x2) / 2)
    app.number_input(key="point_y").set_value(float(y1 + y2) / 2)
    app.button(key="add_point").click().run()
    app.radio(key="point_kind").set_value("remove (−)")
    app.number_input(key="point_x").set_value(float(x1) + 1)
    app.button(key="add_point").click().run()
    assert not app.exception, app.exception

    edit = _state(app).edits[1]
    assert [p[2] for p in edit.points] == [1, 0]
    assert edit.points[1][0] == pytest.approx(float(x1) + 1)
    assert encoder_calls() == calls, "a refine click must not re-encode the image"
    assert any("2 point(s) on #1" in c.value and "Last refine:" in c.value for c in app.caption)
    app.button(key="clear_points").click().run()
    assert 1 not in _state(app).edits and encoder_calls() == calls


def test_upload_errors_are_friendly(app, monkeypatch) -> None:
    app.sidebar.radio(key="source").set_value("Upload").run()
    app.sidebar.file_uploader(key="upload").set_value(("scene.png", b"not a png", "image/png")).run()
    assert "could not be read as an image" in app.error[0].value
    state = _state(app)  # nothing of the previous image (the example) stays on screen
    assert state.image is None and state.result is None and state.image_name == "image.png"
    monkeypatch.setenv("GROUNDED_SAM_APP_MAX_UPLOAD_MB", "0.001")
    app.sidebar.file_uploader(key="upload").set_value(("scene.png", _png(SCENE.image), "image/png")).run()
    assert "the limit is 0.001 MB" in app.error[0].value


def test_everything_tab_uses_the_generator_function(app, monkeypatch) -> None:
    calls = []

    def fake(models, image, classes, labeler, **settings) -> Result:
        calls.append((image.shape, classes, settings))
        n = len(SCENE.labels)
        return Result(SCENE.masks, SCENE.boxes, ["object"] * n, np.ones(n), np.ones(n), SCENE.image.shape[:2])

    monkeypatch.setattr(actions, "segment_everything", fake)
    _upload_scene(app)
    app.slider(key="points_per_side").set_value(8)
    app.slider(key="min_iou").set_value(0.5)
    app.button(key="everything").click().run()
    assert calls == [((120, 160, 3), None, {"points_per_side": 8, "min_iou": 0.5, "min_stability": 0.95})]
    assert any(c.value == f"{len(SCENE.labels)} mask(s)." for c in app.caption)
    assert "everything-coco" in [d.key for d in app.get("download_button")]


def test_inpaint_tab_removes_and_explains_a_missing_diffusion_model(app, tmp_path, monkeypatch) -> None:
    _upload_scene(app)
    assert any("Run a text prompt" in i.value for i in app.info)  # the tab explains itself before a run
    assert not [b for b in app.button if b.key == "inpaint"]
    _run(app)
    app.slider(key="dilate").set_value(2)
    app.button(key="inpaint").click().run()
    out = _state(app).inpainted
    assert out is not None and out.shape == SCENE.image.shape
    assert (out != SCENE.image).any()
    assert "inpainted" in [d.key for d in app.get("download_button")]

    monkeypatch.setenv("GROUNDED_SAM_HOME", str(tmp_path))
    app.radio(key="inpaint_mode").set_value("Replace with a prompt (Stable Diffusion)").run()
    assert any("Replacing is unavailable" in w.value for w in app.warning)
    assert app.button(key="inpaint").disabled


def test_replace_with_a_configured_diffusion_model(app, tmp_path, monkeypatch) -> None:
    pytest.importorskip("diffusers")
    from tests.inpaint.tiny_diffusion import save_tiny_inpainting_model

    monkeypatch.setenv("GROUNDED_SAM_INPAINT_MODEL", str(save_tiny_inpainting_model(tmp_path)))
    _upload_scene(app)
    _state(app).set_result(scene_result())  # ground-truth masks: the replaced region is known
    app.run()
    app.radio(key="inpaint_mode").set_value("Replace with a prompt (Stable Diffusion)").run()
    assert not [w for w in app.warning if "unavailable" in w.value]
    app.text_input(key="replace_with").set_value("a red bike")
    app.slider(key="steps").set_value(1)
    app.slider(key="dilate").set_value(0)
    app.button(key="inpaint").click().run()
    assert not app.exception, app.exception
    out = _state(app).inpainted
    inside = SCENE.masks.any(axis=0)
    np.testing.assert_array_equal(out[~inside], SCENE.image[~inside])
    assert np.abs(out[inside].astype(int) - SCENE.image[inside]).mean() > 5


def test_a_pipeline_without_sam_finds_masks_and_says_why_clicks_are_off(monkeypatch) -> None:
    monkeypatch.setenv(PIPELINE_ENV, "tests.apps.recorded:segmenting_pipeline")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    at = AppTest.from_file(APP, default_timeout=120)
    at.run()
    _upload_scene(at)
    _run(at)
    result = _state(at).result
    assert len(result) == len(SCENE.labels)
    np.testing.assert_array_equal(result.masks, SCENE.masks)
    assert any("Clicks are off" in info.value for info in at.info), [i.value for i in at.info]
    assert not any(button.key == "add_point" for button in at.button)


def test_a_20000x2_upload_and_a_huge_prompt_are_explained_not_crashed_on(app) -> None:
    app.sidebar.radio(key="source").set_value("Upload").run()
    thin = np.zeros((2, 20000, 3), dtype=np.uint8)
    app.sidebar.file_uploader(key="upload").set_value(("thin.png", _png(thin), "image/png")).run()
    assert not app.exception, app.exception
    assert "20000×2 pixels: too thin" in app.error[0].value
    assert _state(app).image is None  # the rejected upload replaced the example: nothing stays
    _upload_scene(app)
    prompt_box = next(box for box in app.text_input if box.key.startswith("prompt-"))
    prompt_box.set_value(PROMPT + ". " + ". ".join(["a shape"] * 2000)).run()
    assert not app.exception, app.exception
    assert any("characters; only the first" in warning.value for warning in app.warning)
