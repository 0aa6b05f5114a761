"""The Review page: go through a labelled dataset most doubtful image first; approve, reject or relabel
each instance, add missed objects with a phrase or a click, export the reviewed dataset.

A click on the image refines the instance under it (its mask, else its box): SAM re-draws that instance
from its box and every click on it so far ("Clicks remove" makes the next clicks negative); a click on
the background adds a new object of the chosen class.

Keyboard: ``a`` approves the selected instance, ``x`` rejects it, ``n`` / ``p`` go to the next / previous
image. Every decision is saved to ``review.jsonl`` when it is made (see
:mod:`grounded_sam.labeling.review`); reopening the page continues at the first undecided image.
"""

from __future__ import annotations

import functools
import os

import streamlit as st

from grounded_sam.labeling.review import EXPORT_FORMATS, ReviewSession
from grounded_sam.ui.models import Models
from grounded_sam.ui.review import (
    REVIEW_ENV,
    STATUS_MARK,
    instance_at,
    load_review_image,
    refine_click,
    reprompt_click,
    reprompt_phrase,
    review_picture,
)

try:
    from streamlit_image_coordinates import streamlit_image_coordinates
except ImportError:  # optional: the number inputs remain for clicks
    streamlit_image_coordinates = None

DISPLAY_WIDTH = 640


def render_review(models: Models) -> None:
    """Lay out the Review page for one script run."""
    st.title("Review")
    dataset = st.sidebar.text_input(
        "Dataset folder", value=os.environ.get(REVIEW_ENV, ""), key="review_dataset"
    )
    if not dataset:
        st.info("Give the folder of a dataset written by `grounded-sam label` in the sidebar.")
        return
    try:
        session = _session(dataset)
    except (OSError, ValueError) as error:
        st.error(f"Cannot open {dataset}: {error}")
        return
    if not session.images:
        st.warning("This dataset has no labelled images.")
        return
    position = st.session_state.setdefault("review_position", session.first_open())
    position = min(position, len(session.images) - 1)
    rel = session.images[position]
    decided, total = session.progress()
    st.caption(
        f"Image {position + 1} of {len(session.images)} (most doubtful first; "
        f"doubt {session.doubt[rel]:.2f}): {rel} — {decided} of {total} instances decided"
    )
    _navigation(session, position)
    pixels = load_review_image(session, rel)
    picture_column, controls = st.columns([3, 2])
    with controls:
        _instances(session, rel)
        _reprompt(models, session, rel, pixels)
    with picture_column:
        _picture(models, session, rel, pixels)
    _export(session)


def _session(dataset: str) -> ReviewSession:
    """One session per dataset folder and browser session (reopened from disk on a new browser session)."""
    key = f"review_session:{dataset}"
    if key not in st.session_state:
        st.session_state[key] = ReviewSession(dataset)
    return st.session_state[key]


def _go(session: ReviewSession, position: int) -> None:
    st.session_state["review_position"] = max(0, min(position, len(session.images) - 1))


def _navigation(session: ReviewSession, position: int) -> None:
    back, forward, undecided = st.columns(3)
    back.button("Previous", key="review_prev", shortcut="p", on_click=_go, args=(session, position - 1))
    forward.button("Next", key="review_next", shortcut="n", on_click=_go, args=(session, position + 1))
    undecided.button("Next undecided", key="review_open", on_click=lambda: _go(session, session.first_open()))


def _instances(session: ReviewSession, rel: str) -> None:
    found = session.instances(rel)
    if not found:
        st.info("No labels on this image: add missed objects below.")
        return
    index = st.radio(
        "Instance",
        [inst.index for inst in found],
        format_func=lambda i: (
            f"#{i} {found[i].class_name} {found[i].score:.2f} {STATUS_MARK[found[i].status]}"
        ),
        key=f"review_pick-{rel}",
    )
    approve, reject = st.columns(2)
    approve.button(
        "Approve",
        key="review_approve",
        shortcut="a",
        type="primary",
        on_click=session.decide,
        args=(rel, index, "approve"),
    )
    reject.button(
        "Reject", key="review_reject", shortcut="x", on_click=session.decide, args=(rel, index, "reject")
    )
    names = list(session.class_names)
    current = found[index].class_name
    new_class = st.selectbox("Class", names, index=names.index(current), key=f"review_class-{rel}-{index}")
    st.button(
        "Change class",
        key="review_relabel",
        disabled=new_class == current,
        on_click=session.decide,
        args=(rel, index, "relabel", new_class),
    )


def _reprompt(models: Models, session: ReviewSession, rel: str, pixels) -> None:
    st.subheader("Add a missed object")
    class_name = st.selectbox("as class", list(session.class_names), key="review_add_class")
    phrase = st.text_input("Phrase to look for", key=f"review_phrase-{rel}")
    if st.button("Find", key="review_find"):
        try:
            added = reprompt_phrase(models, session, rel, pixels, phrase, class_name)
            st.session_state["review_message"] = f"Added {len(added)} instance(s) for “{phrase}”."
        except ValueError as error:
            st.session_state["review_message"] = str(error)
    h, w = pixels.shape[:2]
    left, right = st.columns(2)
    x = left.number_input("click x", 0.0, float(w - 1), float(w // 2), key="review_x")
    y = right.number_input("click y", 0.0, float(h - 1), float(h // 2), key="review_y")
    st.checkbox("Clicks remove (the point is not part of the object)", key="review_negative")
    add, refine = st.columns(2)
    if add.button("Add at point", key="review_point"):
        _click(models, session, rel, pixels, class_name, x, y)
    refine.button(
        "Refine at point",
        key="review_refine_point",
        on_click=_click_on_image,
        args=(models, session, rel, pixels, x, y),
    )
    if st.session_state.get("review_message"):
        st.caption(st.session_state["review_message"])


def _click(
    models: Models, session: ReviewSession, rel: str, pixels, class_name: str, x: float, y: float
) -> None:
    try:
        added = reprompt_click(models, session, rel, pixels, x, y, class_name)
        st.session_state["review_message"] = f"Added {len(added)} instance(s) at ({x:.0f}, {y:.0f})."
    except ValueError as error:
        st.session_state["review_message"] = str(error)


def _click_on_image(models: Models, session: ReviewSession, rel: str, pixels, x: float, y: float) -> None:
    """Refine the instance under (x, y) (the one refined last when the click is near it) and select it;
    on the background add a new object of the chosen class. Runs as a callback, before the widgets."""
    editing = f"review_editing-{rel}"
    index = instance_at(session, rel, x, y, prefer=st.session_state.get(editing))
    positive = not st.session_state.get("review_negative", False)
    if index is None and not positive:
        st.session_state["review_message"] = f"No instance at ({x:.0f}, {y:.0f}) to remove it from."
        return
    if index is None:
        class_name = st.session_state.get("review_add_class", session.class_names[0])
        _click(models, session, rel, pixels, class_name, x, y)
        return
    try:
        refine_click(models, session, rel, pixels, index, x, y, positive=positive)
        st.session_state[editing] = st.session_state[f"review_pick-{rel}"] = index
        verb = "added to" if positive else "removed from"
        st.session_state["review_message"] = f"Refined #{index}: ({x:.0f}, {y:.0f}) {verb} it."
    except ValueError as error:
        st.session_state["review_message"] = str(error)


def _picture(models: Models, session: ReviewSession, rel: str, pixels) -> None:
    picture = review_picture(session, rel, pixels)
    if streamlit_image_coordinates is None:
        st.image(picture)
        return
    width = min(DISPLAY_WIDTH, picture.width * 2)
    key = f"review_click-{rel}"
    streamlit_image_coordinates(
        picture,
        width=width,
        key=key,
        on_click=functools.partial(_on_click, models, session, rel, pixels, key, width),
    )


def _on_click(models: Models, session: ReviewSession, rel: str, pixels, key: str, width: int) -> None:
    value = st.session_state.get(key)
    if not value:
        return
    scale = pixels.shape[1] / width
    _click_on_image(models, session, rel, pixels, value["x"] * scale, value["y"] * scale)


def _export(session: ReviewSession) -> None:
    with st.expander("Export the reviewed dataset"):
        target = st.text_input("Output folder (new or empty)", key="review_export_dir")
        fmt = st.selectbox("Format", list(EXPORT_FORMATS), key="review_export_format")
        unreviewed = st.checkbox("Include unreviewed labels", value=False, key="review_export_unreviewed")
        if st.button("Export", key="review_export") and target:
            try:
                files = session.export(target, fmt, include_unreviewed=unreviewed)  # type: ignore[arg-type]
                st.success(f"Wrote {target} ({', '.join(p.name for p in files)}).")
            except (OSError, ValueError) as error:
                st.error(str(error))
