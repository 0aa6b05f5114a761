"""Crash safety: resume after SIGKILL / Ctrl-C gives the uninterrupted dataset byte for byte; changed
settings are refused or overwritten; the output never leaves its folder."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from grounded_sam.labeling import SettingsMismatchError, label_dataset, split_of
from grounded_sam.labeling.manifest import STATE_DIR, parse_splits
from tests.labeling.helpers import CORRUPT, ONTOLOGY, factory, tree_bytes

REPO = Path(__file__).resolve().parents[2]
SPLIT = "0.5,0.5"
# A run in another process, slowed down per image so that it can be killed half-way.
CHILD = """
import sys, torch
torch.set_num_threads(1)
from pathlib import Path
from grounded_sam.labeling import label_dataset
from tests.labeling.helpers import ONTOLOGY, factory
folder, out, fmt, delay = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3], float(sys.argv[4])
label_dataset(folder, ONTOLOGY, out, format=fmt, pipeline_factory=factory(folder, delay), split="0.5,0.5",
              model_id="scripted", batch_size=1)
"""


def run(folder, out, fmt="coco", **options):
    options.setdefault("pipeline_factory", factory(folder))
    return label_dataset(folder, ONTOLOGY, out, format=fmt, split=SPLIT, model_id="scripted", **options)


def records(out: Path) -> list[Path]:
    folder = out / STATE_DIR / "records"
    return [p for p in folder.rglob("*.json") if not p.name.startswith(".")] if folder.is_dir() else []


def test_resume_after_sigkill_equals_an_uninterrupted_run(scenes, tmp_path) -> None:
    folder, _ = scenes
    run(folder, tmp_path / "reference")
    out = tmp_path / "killed"
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    args = [sys.executable, "-c", CHILD, str(folder), str(out), "coco", "0.4"]
    child = subprocess.Popen(args, cwd=REPO, env=env, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while len(records(out)) < 3 and child.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    child.send_signal(signal.SIGKILL)
    child.wait()
    assert child.returncode == -signal.SIGKILL, child.stderr.read().decode()
    done_before = len(records(out))
    assert 3 <= done_before < 9 and not (out / "summary.json").exists()
    summary = run(folder, out, batch_size=2)
    assert summary.resumed >= 3 and summary.labelled == 8
    assert tree_bytes(out) == tree_bytes(tmp_path / "reference")


@pytest.mark.parametrize("fmt", ["yolo", "masks"])
def test_resume_after_ctrl_c_equals_an_uninterrupted_run(scenes, tmp_path, fmt) -> None:
    folder, _ = scenes
    run(folder, tmp_path / "reference", fmt)

    def interrupt_after_four(update) -> None:
        if update.completed == 4:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run(folder, tmp_path / "out", fmt, progress=interrupt_after_four, batch_size=1)
    assert len(records(tmp_path / "out")) == 4
    # A kill -9 during an atomic write leaves a temporary file behind; the resumed run removes it.
    stray = tmp_path / "out" / "images" / "val" / ".scene_000009.0123456789ab.tmp.png"
    stray.parent.mkdir(parents=True, exist_ok=True)
    stray.write_bytes(b"partial")
    summary = run(folder, tmp_path / "out", fmt)
    assert (summary.resumed, summary.labelled) == (4, 8)
    assert tree_bytes(tmp_path / "out") == tree_bytes(tmp_path / "reference")


def test_changed_settings_are_refused_and_overwrite_clears_only_our_files(scenes, tmp_path) -> None:
    folder, _ = scenes
    out = tmp_path / "ds"
    run(folder, out, "coco")
    with pytest.raises(SettingsMismatchError, match="box_threshold"):
        run(folder, out, "coco", box_threshold=0.5)
    with pytest.raises(SettingsMismatchError, match="format: 'coco' -> 'yolo'"):
        run(folder, out, "yolo")
    with pytest.raises(SettingsMismatchError, match="ontology"):
        label_dataset(
            folder, "red circle", out, split=SPLIT, model_id="scripted", pipeline_factory=factory(folder)
        )
    (out / "notes.md").write_text("mine")
    (out / "images" / "train" / "mine.txt").write_text("mine too")
    run(folder, out, "yolo", overwrite=True)
    assert not (out / "annotations").exists()
    run(folder, tmp_path / "fresh", "yolo")
    mine = {"notes.md", "images/train/mine.txt"}
    ours = {k: v for k, v in tree_bytes(out).items() if k not in mine}
    assert ours == tree_bytes(tmp_path / "fresh")
    assert (out / "notes.md").read_text() == "mine" and (out / "images" / "train" / "mine.txt").exists()


def test_removed_images_leave_the_dataset(scenes, tmp_path) -> None:
    folder = tmp_path / "in"
    shutil.copytree(scenes[0], folder)
    out, truth = tmp_path / "ds", factory(scenes[0])  # knows the removed image too
    run(folder, out, "yolo", pipeline_factory=truth)
    gone = "0001/scene_000004.png"
    (folder / gone).unlink()
    summary = run(folder, out, "yolo", pipeline_factory=truth)
    assert summary.labelled == 7
    assert not (out / "images" / split_of(gone, parse_splits(SPLIT)) / gone).exists()
    run(folder, tmp_path / "fresh", "yolo", pipeline_factory=truth)
    assert tree_bytes(out) == tree_bytes(tmp_path / "fresh")


def file_stamps(root: Path) -> dict[str, tuple[int, int]]:
    """(inode, mtime ns) of each file under `root` but the lock file: an atomic rewrite changes both."""
    found = {p.relative_to(root).as_posix(): p.stat() for p in root.rglob("*") if p.is_file()}
    return {rel: (st.st_ino, st.st_mtime_ns) for rel, st in found.items() if rel != f"{STATE_DIR}/lock"}


@pytest.mark.parametrize("fmt", ["coco", "yolo"])
def test_a_resume_with_nothing_to_do_writes_nothing(scenes, tmp_path, fmt) -> None:
    folder = tmp_path / "in"
    shutil.copytree(scenes[0], folder)
    (folder / CORRUPT).unlink()  # a failed image is retried by every run, so that run is not a no-op
    out = tmp_path / "ds"
    first = run(folder, out, fmt)
    before, content = file_stamps(out), tree_bytes(out)
    again = run(folder, out, fmt)
    assert file_stamps(out) == before  # no file written, replaced or added
    assert (again.labelled, again.resumed, again.files) == (first.labelled, first.labelled, first.files)
    assert again.instances_per_class == first.instances_per_class
    with_sheet = run(folder, out, fmt, contact_sheet=True)  # only the missing sheet is written
    written = {rel for rel, stamp in file_stamps(out).items() if before.get(rel) != stamp}
    assert written == {"contact_sheet.png", f"{STATE_DIR}/assembled.json"} and with_sheet.contact_sheet
    before = file_stamps(out)
    run(folder, out, fmt, contact_sheet=True)
    assert file_stamps(out) == before
    # a dataset file that went missing, or a run killed before it assembled them, is put right
    (out / first.files[0]).unlink()
    run(folder, out, fmt)
    (out / STATE_DIR / "assembled.json").unlink()
    run(folder, out, fmt)
    assert {k: v for k, v in tree_bytes(out).items() if k != "contact_sheet.png"} == {
        k: v for k, v in content.items() if k != "contact_sheet.png"
    } | {f"{STATE_DIR}/assembled.json": (out / STATE_DIR / "assembled.json").read_bytes()}
    # a new image is labelled and the dataset files are assembled again
    shutil.copy(folder / "0000" / "scene_000000.png", folder / "copy.png")
    grown = run(folder, out, fmt, pipeline_factory=factory(scenes[0]))
    assert (grown.labelled, grown.resumed) == (first.labelled + 1, first.labelled)
    assert (out / first.files[0]).stat().st_mtime_ns != before[first.files[0].relative_to(out).as_posix()][1]


def test_output_folder_rules(scenes, tmp_path) -> None:
    folder, _ = scenes
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "thesis.tex").write_text("precious")
    for options in ({}, {"overwrite": True}):
        with pytest.raises(ValueError, match="not empty"):
            run(folder, foreign, **options)
    with pytest.raises(ValueError, match="must not contain the image folder"):
        run(folder, folder.parent)
    inner = tmp_path / "in"
    shutil.copytree(folder, inner)
    first = run(inner, inner / "dataset", pipeline_factory=factory(folder))
    again = run(inner, inner / "dataset", pipeline_factory=factory(folder))
    assert again.images == first.images == 9 and again.resumed == 8  # its own output is not scanned


def test_symlinks_never_lead_writes_outside(scenes, tmp_path) -> None:
    folder = tmp_path / "in"
    shutil.copytree(scenes[0], folder)
    out, outside = tmp_path / "ds", tmp_path / "outside"
    outside.mkdir()
    run(folder, out)
    shutil.copy(folder / "0000" / "scene_000000.png", folder / "new.png")
    shutil.rmtree(out / "images")
    (out / "images").symlink_to(outside)
    with pytest.raises(ValueError, match="outside the output folder"):
        run(folder, out, pipeline_factory=factory(scenes[0]))
    assert not any(outside.iterdir())
    assert "outside the output folder" in (out / STATE_DIR / "records" / "new.png.json").read_text()
