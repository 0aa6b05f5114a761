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
the run reports what is left to do, and the whole no-op run).
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
    config = SceneConfig(size=(size, size), shapes=("circle", "square"), colors=("red", "blue"))
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
        first: list[float] = []

        def progress(update: ProgressUpdate) -> None:
            if update.outcome is None and not first:
                first.append(time.perf_counter())

        start = time.perf_counter()
        summary = label_dataset(
            work / f"images{n}", CLASSES, work / f"out{n}", pipeline_factory=factory(work / f"images{n}"),
            model_id="bench", format="coco", batch_size=batch_size, progress=progress,
        )  # fmt: skip
        total = time.perf_counter() - start
        print(
            f"resume of the finished {n}-image run: {first[0] - start:.2f} s until it knows what is left "
            f"({summary.resumed} done), {total:.2f} s in all (dataset files rewritten)"
        )
    print(f"load average after: {os.getloadavg()}")


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
