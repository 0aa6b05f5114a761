"""Tiled prediction on a large synthetic scene: recall of small shapes with and without tiles, time and
peak RSS, with the embedded demo model (the default pipeline).

Each mode runs in its own subprocess so that its peak RSS is its own: VmHWM of /proc/self/status, read
right after the prediction, before the scoring (not ru_maxrss, which Linux carries over from the parent
across fork and exec: the parent that drew the scene's dense masks would set every child's figure).
Recall: a true shape counts as found when a predicted mask of its label overlaps it with IoU >= 0.5
(scored on RLEs, so scoring materialises no mask stack). "masks MB" is what the Result holds for its
masks: the (N, H, W) stack without tiles, the crops (`MaskCrops`) with tiles.

    python benchmarks/bench_tiles.py [--height 4000] [--width 6000] [--tile 1024] [--overlap 0.2]
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

import numpy as np
import torch
from peak_rss import peak_rss_mb

from grounded_sam.data import SceneConfig, write_scene

SHAPES = ("circle", "square", "triangle")
COLORS = ("red", "green", "blue", "yellow")


def make(png: Path, height: int, width: int, seed: int) -> None:
    from grounded_sam.data import make_scene

    config = SceneConfig(
        size=(height, width),
        min_objects=60,
        max_objects=80,
        shapes=SHAPES,
        colors=COLORS,
        size_range=(0.015, 0.03),  # 60-120 px on a 4000 px side: a few pixels once shrunk to 1024
    )
    write_scene(make_scene(seed, config), png)


def run_mode(scene_json: Path, tile: int, overlap: float) -> dict[str, float]:
    from pycocotools import mask as mask_utils

    from grounded_sam.api import default_pipeline
    from grounded_sam.ops.rle import rle_for_pycocotools

    def pairwise_iou(ra, rb):  # N and M RLEs -> (N, M)
        ra, rb = [rle_for_pycocotools(r) for r in ra], [rle_for_pycocotools(r) for r in rb]
        return np.asarray(mask_utils.iou(ra, rb, [0] * len(rb))).reshape(len(ra), len(rb))

    from grounded_sam.io import load_image

    truth_record = json.loads(scene_json.read_text())  # RLEs: no dense ground-truth masks in this process
    labels = [a["label"] for a in truth_record["annotations"]]
    image = load_image(scene_json.parent / truth_record["image"])
    pipeline = default_pipeline()
    phrases = sorted(set(labels))
    start = time.perf_counter()
    result = pipeline.predict(image, phrases, tiles=(tile, overlap) if tile else None)
    elapsed = time.perf_counter() - start
    peak_mb = peak_rss_mb()
    held = result.mask_crops().nbytes() if result.compact else result.masks.nbytes
    found = 0
    for label in phrases:
        truth = [a["segmentation"] for a in truth_record["annotations"] if a["label"] == label]
        predicted = result.filter(labels=label).rles()
        if len(predicted):
            found += int((pairwise_iou(predicted, truth).max(axis=0) >= 0.5).sum())
    return {
        "objects": len(labels),
        "found": found,
        "recall": found / max(len(labels), 1),
        "instances": len(result),
        "seconds": elapsed,
        "peak_rss_mb": peak_mb,
        "masks_mb": held / 2**20,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--height", type=int, default=4000)
    parser.add_argument("--width", type=int, default=6000)
    parser.add_argument("--tile", type=int, default=1024)
    parser.add_argument("--overlap", type=float, default=0.2)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--mode", help=argparse.SUPPRESS)
    parser.add_argument("--scene", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.mode is not None:  # child process: one mode
        print(json.dumps(run_mode(Path(args.scene), int(args.mode), args.overlap)))
        return
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))
    print(f"cpu capability: {torch.backends.cpu.get_cpu_capability()}; load average: {os.getloadavg()}")
    with tempfile.TemporaryDirectory() as tmp:
        scene_json = Path(tmp) / "scene.json"
        make(Path(tmp) / "scene.png", args.height, args.width, args.seed)
        rows = {}
        for name, tile in (("whole image", 0), (f"tiles {args.tile} / {args.overlap}", args.tile)):
            command = [sys.executable, __file__, "--mode", str(tile), "--scene", str(scene_json)]
            command += ["--overlap", str(args.overlap)]
            done = subprocess.run(command, capture_output=True, text=True)
            if done.returncode != 0:
                raise SystemExit(f"{name} failed ({done.returncode}):\n{done.stderr[-4000:]}")
            rows[name] = json.loads(done.stdout.strip().splitlines()[-1])
    print(f"{args.width}x{args.height} scene, {next(iter(rows.values()))['objects']} shapes")
    print(
        f"{'mode':<22} {'recall':>7} {'found':>6} {'masks':>6} {'seconds':>8} {'peak RSS MB':>12} "
        f"{'masks MB':>9}"
    )
    for name, row in rows.items():
        print(
            f"{name:<22} {row['recall']:>7.3f} {row['found']:>6} {row['instances']:>6} "
            f"{row['seconds']:>8.1f} {row['peak_rss_mb']:>12.0f} {row['masks_mb']:>9.2f}"
        )
    print(f"load average after: {os.getloadavg()}; image {args.height * args.width * 3 / 2**20:.0f} MB")


if __name__ == "__main__":
    main()
