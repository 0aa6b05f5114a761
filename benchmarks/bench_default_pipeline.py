"""The default pipeline per image, this tree vs another checkout: the embedded demo model (CLIP over
segment-everything) labels demo scenes (256 x 256) with ``grounded-sam label``'s defaults.

Each tree runs in its own subprocess with PYTHONPATH pointing at it (so ``--baseline`` can be e.g.
``git worktree add /tmp/base <commit>``), back to back ``--repeats`` times; prints seconds and CPU
seconds per image, the paired ratios, the masks found, the CPU capability and the load average.
``--threads`` sets torch's threads in both (the labelling CLI leaves torch's default: all cores).

    python benchmarks/bench_default_pipeline.py --baseline /tmp/base --images 12 --repeats 3 [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
DEMO_CLASSES = "red circle, blue square, green triangle, yellow star"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--baseline", type=Path, help="a checkout of the code to compare with")
    parser.add_argument("--images", type=int, default=12)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--worker", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        demo_worker(args.worker, args.threads, args.batch_size)
    else:
        demo_side_by_side(args)


def demo_worker(folder: Path, threads: int, batch_size: int) -> None:
    """Label ``folder`` with the default pipeline of the grounded_sam on sys.path; print JSON timings."""
    import grounded_sam
    from grounded_sam.demo import build_demo_pipeline
    from grounded_sam.labeling import label_dataset

    torch.set_num_threads(threads)
    pipeline = build_demo_pipeline()
    pipeline.predict(folder / "warmup.png", "red circle")
    with tempfile.TemporaryDirectory() as out:
        start, cpu = time.perf_counter(), time.process_time()
        summary = label_dataset(
            folder / "images", DEMO_CLASSES, out, pipeline=pipeline, batch_size=batch_size, model_id="bench"
        )
        wall, cpu = time.perf_counter() - start, time.process_time() - cpu
        coco = [json.loads(p.read_text()) for p in Path(out).rglob("*.json")]
        instances = sum(len(data["annotations"]) for data in coco if "annotations" in data)
    print(
        json.dumps(
            {
                "per_image": wall / summary.labelled,
                "cpu_per_image": cpu / summary.labelled,
                "images": summary.labelled,
                "instances": instances,
                "code": str(Path(grounded_sam.__file__).parents[1]),
                "load": os.getloadavg()[0],
            }
        )
    )


def demo_side_by_side(args: argparse.Namespace) -> None:
    from PIL import Image

    from grounded_sam.data import iter_scenes, write_scene_folder
    from grounded_sam.devices import cpu_capability

    if args.baseline is None:
        raise SystemExit("--baseline PATH is needed (a checkout of the code to compare with)")
    trees = {"ours": ROOT, "baseline": args.baseline.resolve()}
    print(f"CPU: {cpu_capability()}; torch threads {args.threads}; load average at start {os.getloadavg()}")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        write_scene_folder(folder / "images", args.images, seed=1000)
        Image.fromarray(next(iter(iter_scenes(999, 1))).image).save(folder / "warmup.png")
        runs: dict[str, list[dict[str, Any]]] = {name: [] for name in trees}
        for repeat in range(args.repeats):
            for name, tree in trees.items():
                command = [sys.executable, __file__, "--worker", str(folder)]
                command += ["--threads", str(args.threads), "--batch-size", str(args.batch_size)]
                env = {**os.environ, "PYTHONPATH": str(tree)}
                output = subprocess.run(command, check=True, capture_output=True, text=True, env=env).stdout
                runs[name].append(json.loads(output.strip().splitlines()[-1]))
            ours, base = runs["ours"][-1], runs["baseline"][-1]
            print(
                f"run {repeat + 1}: ours {ours['per_image']:.2f} s/image (cpu {ours['cpu_per_image']:.2f} s, "
                f"{ours['instances']} instances), baseline {base['per_image']:.2f} s/image (cpu "
                f"{base['cpu_per_image']:.2f} s, {base['instances']} instances): ratio "
                f"{ours['per_image'] / base['per_image']:.3f}; load {base['load']:.1f}"
            )
    pairs = list(zip(runs["ours"], runs["baseline"], strict=True))
    ratios = [o["per_image"] / b["per_image"] for o, b in pairs]
    print(
        f"{args.images} demo scenes, batch {args.batch_size}; code: ours {ROOT}, baseline {trees['baseline']}"
    )
    cpu = [o["cpu_per_image"] / b["cpu_per_image"] for o, b in pairs]
    for name, values in (("wall", ratios), ("CPU", cpu)):
        median = sorted(values)[len(values) // 2]
        spread = f"{min(values):.3f}-{max(values):.3f}"
        print(f"median {name} ratio ours / baseline per image: {median:.3f} ({spread})")
    print(f"load average at end {os.getloadavg()}")


if __name__ == "__main__":
    main()
