"""Auto-labelling throughput: the local engine vs the Ray engine, on the same folder and model.

A folder of synthetic scenes is labelled to COCO with a scripted detector (ground-truth boxes, looked up
by a hash of the pixels) and a tiny random SAM, so the numbers measure the labelling machinery (decode,
embed, decode masks, encode RLE, atomic writes, records) rather than a big model. Both engines must give
the same dataset; the script checks it byte for byte.

    python benchmarks/bench_labeling.py [--images 48] [--size 192] [--workers 2] [--batch-size 4]

The default pipeline's time per image (the demo model), against another checkout of the code, is
``benchmarks/bench_default_pipeline.py``.

With ``--scale 100,1000`` it instead measures folder scale on the local engine: images/s for each folder
size (the cost per image must not grow with the folder: no per-image rescans of the records, the
manifest or the dataset), then the start-up time of resuming the largest finished run (the time until
the run reports what is left to do, and the whole no-op run, which must write no file), and for
comparison a resume that has to assemble the dataset files again (as after a run killed at its end).
``--size`` sets the image side (at most 96; e.g. 32 for a quick 10,000-image run).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from grounded_sam.data import SceneConfig, write_scene_folder
from grounded_sam.labeling import ProgressUpdate, label_dataset

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the tests' scripted pipeline
from tests.labeling.helpers import factory, tree_bytes  # noqa: E402

CLASSES = "red circle, blue circle, red square, blue square"


def timed_run(folder: Path, out: Path, **options: Any) -> tuple[float, float, int]:
    """(wall seconds, steady images/s between the first and the last finished image, images)."""
    stamps: list[float] = []

    def progress(update: ProgressUpdate) -> None:
        if update.outcome is not None:
            stamps.append(time.perf_counter())

    start = time.perf_counter()
    summary = label_dataset(
        folder, CLASSES, out, pipeline_factory=factory(folder), model_id="bench", progress=progress, **options
    )
    wall = time.perf_counter() - start
    steady = (len(stamps) - 1) / (stamps[-1] - stamps[0]) if len(stamps) > 1 else float("nan")
    return wall, steady, summary.labelled


def scale(sizes: list[int], size: int, batch_size: int) -> None:
    """Images/s at each folder size, and the resume start-up time on the largest."""
    smallest = max(0.12, 8 / size)  # shapes of at least 8 pixels on tiny images
    config = SceneConfig(
        size=(size, size), shapes=("circle", "square"), colors=("red", "blue"), size_range=(smallest, 0.45)
    )
    torch.set_num_threads(1)
    print(f"cpu capability: {torch.backends.cpu.get_cpu_capability()}; load average: {os.getloadavg()}")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        rows = []
        for n in sizes:
            folder = work / f"images{n}"
            write_scene_folder(folder, n, seed=0, config=config, per_folder=100)
            wall, steady, labelled = timed_run(folder, work / f"out{n}", format="coco", batch_size=batch_size)
            rows.append((n, wall, steady, labelled))
        print(f"images of {size}x{size}, tiny random SAM, local engine, 1 torch thread, batch {batch_size}")
        print(f"{'images':>7s} {'wall s':>8s} {'img/s (wall)':>13s} {'img/s (steady)':>15s}")
        for n, wall, steady, labelled in rows:
            print(f"{n:7d} {wall:8.2f} {labelled / wall:13.2f} {steady:15.2f}")
        n = sizes[-1]
        out = work / f"out{n}"
        before = file_stamps(out)
        plan, total, resumed = timed_resume(work / f"images{n}", out, batch_size)
        written = sum(1 for path, stamp in file_stamps(out).items() if before.get(path) != stamp)
        print(
            f"no-op resume of the finished {n}-image run: {plan:.2f} s until it knows what is left "
            f"({resumed} done), {total:.2f} s in all; files written: {written}"
        )
        (out / ".labeling" / "assembled.json").unlink(missing_ok=True)  # as if killed at its end
        plan, total, _ = timed_resume(work / f"images{n}", out, batch_size)
        print(f"resume that assembles the dataset files again: {plan:.2f} s to plan, {total:.2f} s in all")
    print(f"load average after: {os.getloadavg()}")


def timed_resume(folder: Path, out: Path, batch_size: int) -> tuple[float, float, int]:
    """(seconds until the run knows what is left, seconds in all, images already done) of a resume."""
    first: list[float] = []

    def progress(update: ProgressUpdate) -> None:
        if update.outcome is None and not first:
            first.append(time.perf_counter())

    start = time.perf_counter()
    summary = label_dataset(
        folder, CLASSES, out, pipeline_factory=factory(folder), model_id="bench", format="coco",
        batch_size=batch_size, progress=progress,
    )  # fmt: skip
    return first[0] - start, time.perf_counter() - start, summary.resumed


def file_stamps(root: Path) -> dict[str, tuple[int, int]]:
    """(inode, mtime ns) of every file under `root` (the lock file excepted), by path."""
    stamps = {}
    for path in root.rglob("*"):
        if path.is_file() and path.name != "lock":
            stat = path.stat()
            stamps[str(path)] = (stat.st_ino, stat.st_mtime_ns)
    return stamps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=48)
    parser.add_argument("--size", type=int, default=192)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--scale", help="comma-separated folder sizes, e.g. 100,1000 (folder-scale mode)")
    args = parser.parse_args()
    if args.scale:
        scale([int(v) for v in args.scale.split(",")], min(args.size, 96), args.batch_size)
        return
    config = SceneConfig(size=(args.size, args.size), shapes=("circle", "square"), colors=("red", "blue"))
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        folder = work / "images"
        write_scene_folder(folder, args.images, seed=0, config=config, per_folder=16)
        common = {"format": "coco", "batch_size": args.batch_size}
        rows = []
        for threads in (1, 2):
            torch.set_num_threads(threads)
            wall, steady, n = timed_run(folder, work / f"local{threads}", workers=args.workers, **common)
            rows.append((f"local, {threads} torch thread(s)", wall, steady, n))
        import ray

        start = time.perf_counter()
        ray.init(
            num_cpus=args.workers,
            include_dashboard=False,
            logging_level="ERROR",
            runtime_env={"env_vars": {"PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}},
        )
        ray_start = time.perf_counter() - start
        wall, steady, n = timed_run(folder, work / "ray", engine="ray", workers=args.workers, **common)
        rows.append((f"ray, {args.workers} actors x 1 thread", wall, steady, n))
        ray.shutdown()
        same = tree_bytes(work / "ray") == tree_bytes(work / "local1")
    print(f"{args.images} images of {args.size}x{args.size}, tiny random SAM, batch {args.batch_size}")
    print(f"{'engine':34s} {'wall s':>8s} {'img/s (wall)':>13s} {'img/s (steady)':>15s}")
    for name, wall, steady, n in rows:
        print(f"{name:34s} {wall:8.2f} {n / wall:13.2f} {steady:15.2f}")
    print(f"ray.init: {ray_start:.2f} s (not in the ray row); ray dataset == local, byte for byte: {same}")


if __name__ == "__main__":
    main()
