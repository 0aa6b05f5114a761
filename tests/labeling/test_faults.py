"""Fault injection for the labelling state machine (`grounded_sam.labeling.state`).

A run is killed with SIGKILL before every file rename it makes (so between any two writes of one image,
during the very first write, and while the dataset files are assembled) and in the middle of a manifest
line; SIGTERM stops the CLI; a second run meets the lock; read-only mounts and a tiny tmpfs (bytes and
inodes) fill up. Every time, running the same call again must give the uninterrupted run's dataset byte
for byte, with no temporary file left. Runs are forked (no interpreter start-up) and use the ground-truth
pipeline (no torch), so each point costs a fraction of a second.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from grounded_sam.labeling import DatasetBusyError, label_dataset
from grounded_sam.labeling.state import ATOMIC_TEMP, LOCK_FILE, STATE_DIR, dataset_lock
from tests.labeling.helpers import ONTOLOGY, factory, tree_bytes, write_folder

REPO = Path(__file__).resolve().parents[2]
SPLIT = "0.5,0.5"


@pytest.fixture(scope="module")
def small(tmp_path_factory) -> Path:
    """3 scenes in two folders, a corrupt PNG (a failed image) and a text file."""
    folder = tmp_path_factory.mktemp("small")
    write_folder(folder, n=3)
    return folder


def run(folder: Path, out: Path, fmt: str = "coco", **options):
    options.setdefault("pipeline_factory", factory(folder, masks="truth"))
    return label_dataset(folder, ONTOLOGY, out, format=fmt, split=SPLIT, model_id="truth", **options)


def count_renames(folder: Path, out: Path, fmt: str, monkeypatch) -> int:
    calls = []
    real = os.replace
    monkeypatch.setattr(os, "replace", lambda a, b: (calls.append(b), real(a, b)))
    run(folder, out, fmt)
    monkeypatch.undo()
    return len(calls)


def killed_run(
    folder: Path, out: Path, fmt: str, *, rename: int = 0, manifest_line: int = 0, **options
) -> int:
    """Fork a run (`options` go to `run`) that SIGKILLs itself just before its `rename`-th rename (or
    half-way through writing its `manifest_line`-th manifest line); return the wait status."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            _arm(rename, manifest_line)
            run(folder, out, fmt, **options)
        finally:
            os._exit(0)
    return os.waitpid(pid, 0)[1]


def _arm(rename: int, manifest_line: int) -> None:  # pragma: no cover - runs in the child
    counts = {"rename": 0, "line": 0}
    real_replace, real_write = os.replace, os.write

    def replace(src, dst):
        counts["rename"] += 1
        if counts["rename"] == rename:
            os.kill(os.getpid(), signal.SIGKILL)
        return real_replace(src, dst)

    def write(fd, data):
        if manifest_line and bytes(data[:8]) == b'{"rel":"':
            counts["line"] += 1
            if counts["line"] == manifest_line:
                real_write(fd, bytes(data[: len(data) // 2]))
                os.kill(os.getpid(), signal.SIGKILL)
        return real_write(fd, data)

    os.replace, os.write = replace, write


def temp_files(root: Path) -> list[str]:
    return [p.name for p in root.rglob("*") if ATOMIC_TEMP.match(p.name) or p.name == LOCK_FILE]


def check_kills(small: Path, tmp_path: Path, fmt: str, points: list[int], monkeypatch) -> None:
    reference = tmp_path / "reference"
    total = count_renames(small, reference, fmt, monkeypatch)
    expected = tree_bytes(reference)
    for point in points or range(1, total + 1):
        out = tmp_path / f"killed_{point}"
        status = killed_run(small, out, fmt, rename=point)
        assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL, (point, total)
        run(small, out, fmt)
        assert tree_bytes(out) == expected, f"{fmt}: killed before rename {point} of {total}"
        assert temp_files(out) == []
        shutil.rmtree(out)


def test_killed_before_every_rename_resumes_to_the_same_coco_dataset(small, tmp_path, monkeypatch) -> None:
    check_kills(small, tmp_path, "coco", [], monkeypatch)  # every point, the first write included


@pytest.mark.parametrize("fmt", ["yolo", "masks", "label-studio", "cvat"])
def test_killed_between_writes_of_one_image(small, tmp_path, monkeypatch, fmt) -> None:
    # settings, plan, then per image: image, label file(s), record. 4 and 6 fall inside the first image.
    check_kills(small, tmp_path, fmt, [1, 4, 6], monkeypatch)


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["yolo", "masks", "label-studio", "cvat"])
def test_killed_before_every_rename_every_format(small, tmp_path, monkeypatch, fmt) -> None:
    check_kills(small, tmp_path, fmt, [], monkeypatch)


def test_killed_half_way_through_a_manifest_line(small, tmp_path) -> None:
    run(small, tmp_path / "reference", "masks")
    for line in (1, 2):
        out = tmp_path / f"torn_{line}"
        status = killed_run(small, out, "masks", manifest_line=line)
        assert os.WTERMSIG(status) == signal.SIGKILL
        run(small, out, "masks")
        assert tree_bytes(out) == tree_bytes(tmp_path / "reference")


def test_a_second_run_is_stopped_by_the_lock_which_a_dead_owner_gives_up(small, tmp_path) -> None:
    out = tmp_path / "ds"
    with dataset_lock(out), pytest.raises(DatasetBusyError, match=f"pid {os.getpid()}"):
        run(small, out)
    holder = subprocess.Popen(  # another process holds the lock, then dies without cleaning up
        [sys.executable, "-c", HOLD_LOCK, str(out)],
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=subprocess.PIPE,
    )
    assert holder.stdout.readline().strip() == b"locked"
    with pytest.raises(DatasetBusyError, match="another grounded-sam label run"):
        run(small, out)
    holder.kill()
    holder.wait()
    assert (out / STATE_DIR / LOCK_FILE).exists()  # left behind by the dead owner...
    run(small, out)  # ...and taken over
    run(small, tmp_path / "reference")
    assert tree_bytes(out) == tree_bytes(tmp_path / "reference")


HOLD_LOCK = """
import sys, time
from pathlib import Path
from grounded_sam.labeling.state import dataset_lock
with dataset_lock(Path(sys.argv[1])):
    print("locked", flush=True)
    time.sleep(600)
"""

SIGTERM_CHILD = """
import sys
from grounded_sam import api
from grounded_sam.cli import app
from tests.labeling.helpers import scripted_pipeline_for
folder, out, onto, delay = sys.argv[1:5]
api.default_pipeline = lambda *names: scripted_pipeline_for(folder, float(delay), "truth")
sys.argv = ["grounded-sam", "label", folder, "-o", out, "--ontology", onto, "--split", "0.5,0.5"]
sys.argv += ["--batch-size", "1"]
app()
"""


def test_sigterm_finishes_or_drops_the_image_in_flight_and_says_so(tmp_path) -> None:
    folder = tmp_path / "in"
    write_folder(folder, n=6)
    onto = tmp_path / "onto.json"
    onto.write_text(json.dumps(ONTOLOGY))
    env = {**os.environ, "PYTHONPATH": str(REPO), "COLUMNS": "200"}

    def cli(out: Path, delay: float) -> subprocess.Popen:
        args = [sys.executable, "-c", SIGTERM_CHILD, str(folder), str(out), str(onto), str(delay)]
        return subprocess.Popen(args, env=env, stderr=subprocess.PIPE, text=True)

    out = tmp_path / "ds"
    child = cli(out, 0.3)
    records = out / STATE_DIR / "records"
    deadline = time.monotonic() + 120
    while child.poll() is None and time.monotonic() < deadline:
        if records.is_dir() and len([p for p in records.rglob("*.json") if p.name[0] != "."]) >= 2:
            break
        time.sleep(0.02)
    child.send_signal(signal.SIGTERM)
    stderr = " ".join(child.communicate(timeout=120)[1].split())
    assert child.returncode == 130, stderr
    assert "Interrupted" in stderr and "Run the same command again to resume" in stderr
    assert temp_files(out) == [] and not (out / "summary.json").exists()
    resumed, reference = cli(out, 0.0), cli(tmp_path / "reference", 0.0)
    said = " ".join(resumed.communicate(timeout=300)[1].split())
    reference.communicate(timeout=300)
    assert resumed.returncode == reference.returncode == 1, said  # 1: the corrupt PNG failed
    assert "were already done" in said and "labelled 6 of 7 images" in said
    assert tree_bytes(out) == tree_bytes(tmp_path / "reference")


def unshare_available() -> str | None:
    if shutil.which("unshare") is None:
        return "the unshare command is not installed"
    probe = subprocess.run(["unshare", "-m", "true"], capture_output=True, text=True)
    return None if probe.returncode == 0 else f"unshare -m failed: {probe.stderr.strip()}"


# Runs inside a private mount namespace over a tmpfs at argv[2]; prints one JSON line per step.
TMPFS_CHILD = """
import json, subprocess, sys
from pathlib import Path
from grounded_sam.labeling import OutputFolderError, label_dataset
from grounded_sam.labeling.state import ATOMIC_TEMP
from tests.labeling.helpers import ONTOLOGY, factory, tree_bytes
folder, mount, fmt = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
out = mount / "ds"
def step(options):
    subprocess.run(["mount", "-o", "remount," + options, "tmpfs", str(mount)], check=True)
    try:
        label_dataset(folder, ONTOLOGY, out, format=fmt, split="0.5,0.5", model_id="truth",
                      pipeline_factory=factory(folder, masks="truth"))
        status = "done"
    except OutputFolderError as e:
        status = str(e)
    temps = [p.name for p in out.rglob("*") if ATOMIC_TEMP.match(p.name)] if out.exists() else []
    tree = {k: v.hex() for k, v in tree_bytes(out).items()} if status == "done" else None
    print(json.dumps({"options": options, "status": status, "temps": temps, "tree": tree}), flush=True)
for options in sys.argv[4:]:
    step(options)
"""


def tmpfs_steps(small: Path, tmp_path: Path, fmt: str, first: str, *steps: str) -> list[dict]:
    mount = tmp_path / "mnt"
    mount.mkdir()
    script = (
        f'mount -t tmpfs -o {first} tmpfs {mount} && exec {sys.executable} -c "$0" {small} {mount} {fmt} "$@"'
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        ["unshare", "-m", "sh", "-c", script, TMPFS_CHILD, *steps], env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    return [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]


@pytest.mark.parametrize(
    ("fmt", "first", "full", "cause"),
    [
        ("masks", "size=24k", "size=24k", "disk is full"),  # bytes run out part-way
        ("coco", "nr_inodes=9", "nr_inodes=9", "disk is full"),  # inodes run out part-way
        ("yolo", "size=4m", "ro", "read-only"),  # a read-only mount, before the first write
    ],
)
def test_full_or_read_only_disks_stop_with_one_clear_error_and_resume(
    small, tmp_path, fmt, first, full, cause
) -> None:
    reason = unshare_available()
    if reason:
        pytest.skip(f"needs a private mount namespace for a tiny tmpfs: {reason}")
    run(small, tmp_path / "reference", fmt)
    expected = {k: v.hex() for k, v in tree_bytes(tmp_path / "reference").items()}
    stopped, again, finished = tmpfs_steps(
        small, tmp_path, fmt, first, full, full, "rw,size=8m,nr_inodes=10000"
    )
    for failed in (stopped, again):  # also when the same command is run again on the still-full disk
        assert cause in failed["status"] and "mnt/ds" in failed["status"], failed["status"]
        assert "run the same command again (a dataset resumes where it stopped)" in failed["status"]
        assert failed["temps"] == []
    assert finished["status"] == "done" and finished["tree"] == expected
