"""The Streamlit page: pick an image, type what to find, refine by clicking, download, inpaint.

Run it with ``grounded-sam app`` (or ``streamlit run apps/streamlit_app.py``). All the work is done by
the Streamlit-free functions of :mod:`grounded_sam.ui`; this module only lays out widgets.
Set ``$GROUNDED_SAM_APP_PIPELINE="package.module:factory"`` to serve another pipeline (see
:mod:`grounded_sam.ui.models`) and ``$GROUNDED_SAM_APP_MAX_UPLOAD_MB`` to change the upload limit.
"""

from __future__ import annotations

import functools
import os
import time
from typing import Any

import numpy as np
import streamlit as st
from PIL import Image, ImageDraw

from grounded_sam.result import Result
from grounded_sam.ui import actions
from grounded_sam.ui.downloads import (
    coco_json_bytes,
    download_stem,
    masks_zip_bytes,
    overlay_png_bytes,
    png_bytes,
)
from grounded_sam.ui.models import PIPELINE_ENV, Models, build_models
from grounded_sam.ui.state import AppState, click_to_pixels, instance_table
from grounded_sam.ui.uploads import (
    DEFAULT_MAX_MB,
    EXAMPLES,
    MAX_UPLOAD_ENV,
    UPLOAD_TYPES,
    UploadError,
    example_scene,
    limit_prompt,
    read_upload,
)

POINT_COLORS = {1: (40, 220, 90), 0: (235, 50, 50)}

try:
    from streamlit_image_coordinates import streamlit_image_coordinates
except ImportError:  # optional: number inputs remain for adding points
    streamlit_image_coordinates = None


@st.cache_resource(show_spinner="Loading the models…")
def _models(configuration: str) -> Models:
    # ``configuration`` only keys the cache: a changed environment gets its own models.
    return build_models()


@st.cache_data(show_spinner=False)
def _example(name: str) -> tuple[np.ndarray, list[str]]:
    scene = example_scene(name)
    return scene.image, scene.labels


@st.cache_resource(show_spinner="Loading the inpainting model…")
def _inpaint_pipeline(configuration: str) -> Any:
    from grounded_sam.inpaint.diffusers_backend import load_inpaint_pipeline

    return load_inpaint_pipeline()


def _configuration() -> str:
    names = (PIPELINE_ENV, "GROUNDED_SAM_SAM_MODEL", "GROUNDED_SAM_DETECTOR", "GROUNDED_SAM_INPAINT_MODEL")
    return "|".join(os.environ.get(name, "") for name in names)


def _state() -> AppState:
    if "app" not in st.session_state:
        st.session_state["app"] = AppState()
    return st.session_state["app"]


def render() -> None:
    """Lay out the whole page for one script run."""
    st.set_page_config(page_title="grounded_sam: text to masks", layout="wide")
    state = _state()
    try:
        models = _models(_configuration())
    except (ImportError, OSError, ValueError, TypeError, RuntimeError) as error:
        st.error(
            f"Could not load the models: {error}. Set GROUNDED_SAM_SAM_MODEL and GROUNDED_SAM_DETECTOR "
            f"to weights you have, or {PIPELINE_ENV} to a pipeline factory."
        )
        st.stop()
    if _page() == "Review":
        from grounded_sam.ui.review_page import render_review

        render_review(models)
        return
    st.title("Text → masks")
    hints = _sidebar(models, state)
    if state.image is None:
        st.info("Choose an example or upload an image in the sidebar.")
        return
    text_tab, everything_tab, inpaint_tab = st.tabs(["Text", "Everything", "Inpaint"])
    with text_tab:
        _text_tab(models, state, hints)
    with everything_tab:
        _everything_tab(models, state)
    with inpaint_tab:
        _inpaint_tab(state)


def _page() -> str:
    """Segment (text to masks) or Review (a labelled dataset; the default under `grounded-sam review`)."""
    from grounded_sam.ui.review import REVIEW_ENV

    pages = ["Review", "Segment"] if os.environ.get(REVIEW_ENV) else ["Segment", "Review"]
    return st.sidebar.radio("Page", pages, horizontal=True, key="page")


def _sidebar(models: Models, state: AppState) -> list[str]:
    """Image choice; returns phrases to suggest as the prompt (the example's objects)."""
    with st.sidebar:
        st.caption(f"Model: {models.description}")
        source = st.radio("Image", ["Example", "Upload"], horizontal=True, key="source")
        hints: list[str] = []
        if source == "Example":
            name = st.selectbox("Example", list(EXAMPLES), key="example")
            pixels, hints = _example(name)
            state.use_image(pixels, f"{name}.png")
            st.caption("Objects in this example: " + ", ".join(dict.fromkeys(hints)))
        else:
            max_mb = float(os.environ.get(MAX_UPLOAD_ENV, DEFAULT_MAX_MB))
            upload = st.file_uploader(
                f"Upload an image (up to {max_mb:g} MB)", type=list(UPLOAD_TYPES), key="upload"
            )
            if upload is not None:
                try:
                    state.use_image(read_upload(upload.name, upload.getvalue(), max_mb=max_mb), upload.name)
                except UploadError as error:
                    state.forget_image()  # the previous image and its results must not stay on screen
                    st.error(str(error))
        if state.image is not None:
            st.image(
                state.image, caption=f"{state.image_name}: {state.image.shape[1]}×{state.image.shape[0]}"
            )
    return hints


def _text_tab(models: Models, state: AppState, hints: list[str]) -> None:
    default = ". ".join(list(dict.fromkeys(hints))[:2])
    prompt = st.text_input(
        "What to find (several phrases separated by '.' or ',')",
        value=default,
        key=f"prompt-{state.image_key}",
    )
    prompt, cut = limit_prompt(prompt)
    if cut is not None:
        st.warning(cut)
    left, right = st.columns(2)
    box_threshold = left.slider("Box threshold", 0.0, 1.0, 0.3, 0.01, key="box_threshold")
    text_threshold = right.slider("Text threshold", 0.0, 1.0, 0.25, 0.01, key="text_threshold")
    if st.button("Run", type="primary", key="run"):
        with st.spinner(f"Finding “{prompt}”…"):
            start = time.perf_counter()
            try:
                found = actions.run_text(models, state, prompt, box_threshold, text_threshold)
                st.session_state["run_message"] = (
                    f"Found {len(found)} instance(s) in {time.perf_counter() - start:.2f} s."
                )
            except ValueError as error:
                st.error(str(error))
    if state.result is None:
        return
    st.caption(st.session_state.get("run_message", ""))
    if len(state.result) == 0:
        st.warning("Nothing found. Try other words or lower the thresholds.")
        return
    picture, controls = st.columns([3, 2])
    with controls:
        selected = _instances_and_refine(models, state)
    with picture:
        _clickable_overlay(models, state, selected)
    _downloads(state.image, state.visible(), state.image_name, "text")


def _instances_and_refine(models: Models, state: AppState) -> int:
    """Instance table, show/hide toggles and point controls; returns the instance selected for refining."""
    result = state.result
    st.table(instance_table(result, state.shown), hide_index=True)
    for i, label in enumerate(result.labels):
        key = f"show-{state.generation}-{i}"
        st.checkbox(
            f"Show #{i} {label}",
            value=bool(state.shown[i]),
            key=key,
            on_change=lambda i=i, key=key: state.set_shown(i, bool(st.session_state[key])),
        )
    st.subheader("Refine")
    unavailable = actions.sam_unavailable(models)
    if unavailable is not None:
        st.info(f"Clicks are off: {unavailable}.")
        return 0
    selected = st.selectbox(
        "Instance to refine",
        list(range(len(result))),
        format_func=lambda i: f"#{i} {result.labels[i]}",
        key=f"refine-target-{state.generation}",
    )
    positive = st.radio("Point", ["add (+)", "remove (−)"], horizontal=True, key="point_kind") == "add (+)"
    x1, y1, x2, y2 = (float(v) for v in result.boxes[selected])
    height, width = result.image_size
    st.caption("Click the image, or enter a point in pixels:")
    left, right = st.columns(2)
    x = left.number_input("x", 0.0, float(width - 1), min((x1 + x2) / 2, width - 1.0), key="point_x")
    y = right.number_input("y", 0.0, float(height - 1), min((y1 + y2) / 2, height - 1.0), key="point_y")
    add, clear = st.columns(2)
    if add.button("Add point", key="add_point"):
        _refine(models, state, selected, x, y, positive)
    if clear.button("Clear points", key="clear_points"):
        actions.clear_points(models, state, selected)
    edit = state.edits.get(selected)
    if edit is not None:
        st.caption(
            f"{len(edit.points)} point(s) on #{selected}. {st.session_state.get('refine_message', '')}"
        )
    return selected


def _refine(models: Models, state: AppState, index: int, x: float, y: float, positive: bool) -> None:
    start = time.perf_counter()
    actions.add_point(models, state, index, x, y, positive)
    elapsed = (time.perf_counter() - start) * 1000
    st.session_state["refine_message"] = f"Last refine: {elapsed:.0f} ms (image embedding reused)."


def _on_click(models: Models, state: AppState, key: str, selected: int) -> None:
    click = st.session_state.get(key)
    if click and state.result is not None:
        x, y = click_to_pixels(click, state.result.image_size)
        positive = st.session_state.get("point_kind", "add (+)") == "add (+)"
        # A click on an instance refines that instance; a click elsewhere, the one chosen in the list.
        target = state.clicked_instance(x, y)
        target = selected if target is None else target
        st.session_state[f"refine-target-{state.generation}"] = target
        _refine(models, state, target, x, y, positive)


def _clickable_overlay(models: Models, state: AppState, selected: int) -> None:
    picture = _with_points(state.visible().overlay(state.image), state, selected)
    if actions.sam_unavailable(models) is not None:
        st.image(picture, caption="Overlay", width="stretch")
        return
    if streamlit_image_coordinates is None:
        st.image(
            picture, caption="Overlay (install streamlit-image-coordinates to click points)", width="stretch"
        )
        return
    key = f"click-{state.generation}-{selected}"
    # The column's width, whatever the window: a fixed width overflowed the column and hid the right part.
    streamlit_image_coordinates(
        picture, width="stretch", key=key, on_click=functools.partial(_on_click, models, state, key, selected)
    )


def _with_points(picture: Image.Image, state: AppState, selected: int) -> Image.Image:
    edit = state.edits.get(selected)
    if edit is None:
        return picture
    draw = ImageDraw.Draw(picture)
    radius = max(3, round(max(picture.size) / 120))
    for x, y, label in edit.points:
        box = (x - radius, y - radius, x + radius, y + radius)
        draw.ellipse(box, fill=POINT_COLORS[label], outline=(255, 255, 255), width=max(1, radius // 3))
    return picture


def _downloads(image: np.ndarray, result: Result, name: str, key: str) -> None:
    if len(result) == 0:
        st.caption("Show at least one instance to download it.")
        return
    stem = download_stem(name)
    zip_col, coco_col, overlay_col = st.columns(3)
    zip_col.download_button(
        "Masks (PNG zip)",
        masks_zip_bytes(result, stem),
        f"{stem}_masks.zip",
        "application/zip",
        key=f"{key}-zip",
    )
    coco_col.download_button(
        "COCO json", coco_json_bytes(result, name), f"{stem}.coco.json", "application/json", key=f"{key}-coco"
    )
    overlay_col.download_button(
        "Overlay PNG",
        overlay_png_bytes(image, result),
        f"{stem}_overlay.png",
        "image/png",
        key=f"{key}-overlay",
    )


def _everything_tab(models: Models, state: AppState) -> None:
    grid, iou, stability = st.columns(3)
    default_points, default_iou, default_stability = actions.everything_defaults(models)
    points = grid.slider("Points per side", 4, 32, default_points, key="points_per_side")
    min_iou = iou.slider("Min predicted IoU", 0.0, 1.0, default_iou, 0.01, key="min_iou")
    min_stability = stability.slider("Min stability", 0.0, 1.0, default_stability, 0.01, key="min_stability")
    classes_text = st.text_input("Class names for CLIP labels (optional, comma-separated)", key="classes")
    classes = [c.strip() for c in classes_text.split(",") if c.strip()]
    if st.button("Segment everything", key="everything"):
        labeler, source = actions.everything_labeler(models) if classes else (None, "")
        if classes and labeler is None:
            st.warning(f"Masks are left unnamed: {source}.")
        with st.spinner("Segmenting everything…"):
            try:
                state.everything = actions.segment_everything(
                    models,
                    state.image,
                    classes if labeler else None,
                    labeler,
                    points_per_side=points,
                    min_iou=min_iou,
                    min_stability=min_stability,
                )
            except (RuntimeError, ValueError) as error:
                st.error(str(error))
    found = state.everything
    if found is None:
        return
    st.caption(f"{len(found)} mask(s).")
    if len(found):
        st.image(found.overlay(state.image, show_labels=bool(classes)), width="stretch")
        st.dataframe(instance_table(found), hide_index=True, key="everything-table")
    _downloads(state.image, found, state.image_name, "everything")


def _inpaint_tab(state: AppState) -> None:
    shown = state.visible()
    if shown is None or len(shown) == 0:
        st.info("Run a text prompt in the Text tab first: the shown instances are removed or replaced.")
        return
    st.caption(
        "Acts on the shown instances: " + ", ".join(f"#{i} {label}" for i, label in _shown_labels(state))
    )
    mode = st.radio(
        "Mode", ["Remove (OpenCV)", "Replace with a prompt (Stable Diffusion)"], key="inpaint_mode"
    )
    dilate = st.slider("Grow the mask by (pixels)", 0, 25, 5, key="dilate")
    prompt, pipeline, steps, ready = None, None, 25, True
    if mode.startswith("Replace"):
        prompt = st.text_input("Replace with", value="a bicycle", key="replace_with")
        steps = st.slider("Steps", 1, 50, 25, key="steps")
        try:
            pipeline = _inpaint_pipeline(_configuration())
        except (ImportError, OSError, ValueError) as error:
            st.warning(f"Replacing is unavailable: {error}")
            ready = False
    if st.button("Inpaint", type="primary", disabled=not ready, key="inpaint"):
        with st.spinner("Inpainting…"):
            actions.inpaint_shown(state, prompt=prompt, dilate=dilate, pipeline=pipeline, steps=steps)
    if state.inpainted is not None:
        before, after = st.columns(2)
        before.image(state.image, caption="Before", width="stretch")
        after.image(state.inpainted, caption="After", width="stretch")
        stem = download_stem(state.image_name)
        st.download_button(
            "Inpainted PNG", png_bytes(state.inpainted), f"{stem}_inpainted.png", "image/png", key="inpainted"
        )


def _shown_labels(state: AppState) -> list[tuple[int, str]]:
    return [(i, label) for i, label in enumerate(state.result.labels) if state.shown[i]]


if __name__ == "__main__":  # ``streamlit run grounded_sam/ui/page.py`` where apps/ is not installed
    render()
