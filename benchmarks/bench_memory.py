"""Peak memory of ``grounded-sam predict`` on the embedded demo model, by image size.

Each size runs in a fresh process (the command line in-process, ``--format json``) on a synthetic scene
of coloured shapes drawn at 640 x 480 and enlarged to the size asked for; the figure is that process's
peak RSS (VmHWM), including Python, torch and the two demo models (the 0 MP row: the same process
on a 64 x 48 image). Prints MB per size and per megapixel above the smallest size.

    python benchmarks/bench_memory.py [--megapixels 0 1 4 12 40] [--prompt "blue star. red circle"]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from peak_rss import peak_rss_mb

PROMPT = "blue triangle. green ellipse. blue star. red circle"  # three of the scene's four objects


def scene_image(megapixels: float, path: Path) -> tuple[int, int]:
    """Write a demo scene enlarged to about ``megapixels`` (4:3) as a JPEG at ``path``; return (W, H)."""
    from PIL import Image

    from grounded_sam.data import SceneConfig, make_scene

    scene = make_scene(3, SceneConfig(size=(480, 640), min_objects=4, max_objects=5))
    width = max(64, round(math.sqrt(megapixels * 1e6 * 4 / 3)))
    height = max(48, round(width * 3 / 4))
    Image.fromarray(scene.image).resize((width, height), Image.Resampling.BILINEAR).save(path, quality=92)
    return width, height


def child(image: str, prompt: str, out: str) -> None:
    """Run ``grounded-sam predict`` in this process and print its peak RSS and time as JSON."""
    from grounded_sam.cli import app

    start = time.perf_counter()
    try:
        app(["predict", image, "--prompt", prompt, "--format", "json", "--out", out], standalone_mode=False)
    except SystemExit as done:
        if done.code:
            raise
    seconds = time.perf_counter() - start
    found = json.loads(next(Path(out).glob("*.json")).read_text())["instances"]
    peak_mb = peak_rss_mb()
    print(json.dumps({"peak_mb": peak_mb, "seconds": seconds, "instances": len(found)}))


def measure(megapixels: float, prompt: str, folder: Path) -> dict[str, float]:
    image = folder / f"scene_{megapixels:g}mp.jpg"
    width, height = scene_image(megapixels, image)
    out = folder / f"out_{megapixels:g}"
    command = [sys.executable, __file__, "--child", str(image), "--prompt", prompt, "--out", str(out)]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{megapixels} MP failed:\n{done.stderr[-2000:]}")
    return {"width": width, "height": height, **json.loads(done.stdout.strip().splitlines()[-1])}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--megapixels", type=float, nargs="+", default=[0, 1, 4, 12, 40])
    parser.add_argument("--prompt", default=PROMPT)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.prompt, args.out)
        return
    import torch

    print(f"load average {os.getloadavg()}, cpu capability {torch.backends.cpu.get_cpu_capability()}")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for megapixels in args.megapixels:
            row = measure(megapixels, args.prompt, Path(tmp))
            rows.append(row)
            pixels = row["width"] * row["height"] / 1e6
            print(
                f"{row['width']:>5} x {row['height']:<5} ({pixels:5.1f} MP): "
                f"peak RSS {row['peak_mb']:7.0f} MB, "
                f"{row['seconds']:6.1f} s, {row['instances']} instances",
                flush=True,
            )
    base = rows[0]
    for row in rows[1:]:
        extra_mp = (row["width"] * row["height"] - base["width"] * base["height"]) / 1e6
        if extra_mp > 0:
            per_mp = (row["peak_mb"] - base["peak_mb"]) / extra_mp
            print(f"{row['width']} x {row['height']}: {per_mp:.1f} MB per extra megapixel")


if __name__ == "__main__":
    main()
