"""Video tracking: frames per second and peak memory as the video grows (100, 200, 400 frames).

A synthetic video of three bouncing shapes (``tests.video.synthetic``) is tracked by
``VideoTracker`` with a small random SAM 2 video model (128-pixel input, the released memory settings:
7 mask memories, 16 object pointers) and a detector that finds the shapes by colour every 30 frames.
Random weights give meaningless masks, so the model's mask logits are replaced by the ground truth after
each real forward pass (``OracleVideoModel``): the number of tracks stays at three and the figures
measure the tracker and SAM 2's real compute and memory, not a model's accuracy.

Each length runs in a fresh subprocess so that its peak RSS (VmHWM) is its own; ``--no-prune``
repeats the longest run with session pruning switched off, to show what the pruning saves.

    python benchmarks/bench_track.py [--frames 100 200 400] [--size 192 256] [--no-prune]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from peak_rss import peak_rss_mb

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the tests' synthetic video


def child(frames: int, size: tuple[int, int], prune: bool) -> dict[str, float]:
    """Track ``frames`` frames in this process; fps, peak RSS and its growth while tracking, in MiB."""
    import torch

    import grounded_sam.video.tracker as tracker_module
    from grounded_sam.video import VideoTracker
    from tests.video.synthetic import (
        ColorDetector,
        OracleVideoModel,
        random_moving_shapes,
        render_moving_shapes,
        tiny_sam2_video,
    )

    torch.set_num_threads(1)
    if not prune:
        tracker_module.prune_session = lambda *args: None
    shapes = random_moving_shapes(3, size, seed=0, max_speed=3.0)
    model, processor = tiny_sam2_video(128)
    tracker = VideoTracker(
        OracleVideoModel(model, shapes, size), processor, ColorDetector(shapes), detect_every=30
    )
    video = (frame.image for frame in render_moving_shapes(shapes, frames, size))
    labels = [s.label for s in shapes]
    before = peak_rss_mb()
    start = time.perf_counter()
    tracked = sum(len(tracks) for _, tracks in tracker.track(video, labels))
    seconds = time.perf_counter() - start
    peak = peak_rss_mb()
    return {
        "frames": frames,
        "fps": frames / seconds,
        "peak_mib": peak,
        "growth_mib": peak - before,
        "rows": tracked,
    }


def run(frames: int, size: tuple[int, int], prune: bool) -> dict[str, float]:
    command = [sys.executable, __file__, "--child", str(frames), "--size", *map(str, size)]
    done = subprocess.run(
        [*command, *([] if prune else ["--no-prune"])], capture_output=True, text=True, check=True
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, nargs="+", default=[100, 200, 400])
    parser.add_argument("--size", type=int, nargs=2, default=[192, 256], metavar=("H", "W"))
    parser.add_argument("--no-prune", action="store_true", help="also run the longest video without pruning")
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    size = (args.size[0], args.size[1])
    if args.child:
        print(json.dumps(child(args.child, size, prune=not args.no_prune)))
        return
    print(f"{size[0]}x{size[1]} frames, 3 shapes, tiny SAM 2 video model at 128 px, one CPU thread")
    print(f"{'frames':>7} {'pruned':>7} {'frames/s':>9} {'peak RSS MiB':>13} {'growth MiB':>11}")
    runs = [(n, True) for n in args.frames] + ([(max(args.frames), False)] if args.no_prune else [])
    for frames, prune in runs:
        r = run(frames, size, prune)
        pruned = "yes" if prune else "no"
        print(f"{frames:>7} {pruned:>7} {r['fps']:>9.1f} {r['peak_mib']:>13.1f} {r['growth_mib']:>11.1f}")


if __name__ == "__main__":
    main()
