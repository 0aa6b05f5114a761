"""Segment-everything speed: our MaskGenerator vs segment_anything's SamAutomaticMaskGenerator.

Both run on the same random SAM weights (ours built with ``build_sam(..., pretrained=False)`` and
randomised, the reference loaded with the same state dict) on one smooth random image. Settings:

* ``default``: the reference's defaults (pred_iou_thresh 0.88, stability 0.95). Random weights may let
  almost no mask through; the counts printed say how many reached each stage.
* ``loose``: no IoU or stability filter, so every one of the 3 × 32² masks is upsampled and scored and
  thousands reach suppression: the post-processing-heavy case.
* ``boxes``: our object-aware mode (``--boxes`` box prompts, one mask each, no filters), timed
  against the reference's grid runs, in float32 and again with ``precision="bfloat16"`` (the network
  in bfloat16: fast where the CPU has bfloat16 matrix units, e.g. Intel AMX), whose masks are compared
  with the float32 run's.

Prints per setting: times, our/reference ratio, mask counts and whether the outputs are identical.
On a shared 2-core VM one run's time can be 10-20 % off, so ``--repeats N`` runs ours and the reference
back to back N times per setting (the reference takes minutes a run on a CPU) and prints the median
times and the median and range of the paired ratios; the boxes mode is timed against those medians.

The small-encoder case (the demo model, a 768 x 1024 scene, 32 x 32 grid, no filters), where the
decoder and post-processing are all the work:

    python benchmarks/bench_everything.py --model demo_sam --size 1024 --height 768 --settings loose

    python benchmarks/bench_everything.py [--model sam_vit_b] [--size 1024] [--boxes 100]
        [--settings default loose boxes] [--repeats 1] [--skip-reference]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

SETTINGS: dict[str, dict[str, Any]] = {
    "default": {},
    "loose": {"pred_iou_thresh": 0.0, "stability_score_thresh": 0.0},
}
REFERENCE_NAMES = {"sam_vit_b": "vit_b", "sam_vit_l": "vit_l", "sam_vit_h": "vit_h"}


def build_models(model: str, seed: int) -> tuple[Any, Any]:
    """Our SAM with seeded random weights, and the reference network holding the same weights.

    ``demo_sam`` is the small-encoder case instead: the shipped demo model's trained weights (a 256-px
    four-block ViT, where the mask decoder and the full-resolution post-processing are all the work), and
    the reference's modules assembled to the same architecture."""
    from segment_anything import sam_model_registry

    from grounded_sam.sam import build_sam

    if model == "demo_sam":
        sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the tests' reference builder
        from grounded_sam.sam.registry import get_spec
        from tests.sam.builders import reference_twin

        ours = build_sam(model, device="cpu").eval()
        return ours, reference_twin(ours, get_spec(model).config)

    ours = build_sam(model, pretrained=False, device="cpu").eval()
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for tensor in ours.state_dict().values():
            if tensor.is_floating_point():
                tensor.copy_(torch.randn(tensor.shape, generator=generator) * 0.02)
    reference = sam_model_registry[REFERENCE_NAMES[model]]().eval()
    reference.load_state_dict(ours.state_dict(), strict=True)
    return ours, reference


def make_image(size: int, seed: int = 0, model: str = "", height: int | None = None) -> np.ndarray:
    """A size x size image of random 16-px blocks; for ``demo_sam`` a (height or size) x size demo scene."""
    if model == "demo_sam":
        from grounded_sam.data import SceneConfig, iter_scenes

        return next(iter(iter_scenes(seed, 1, SceneConfig(size=(height or size, size))))).image
    rng = np.random.default_rng(seed)
    cells = size // 16
    return np.kron(rng.integers(0, 256, (cells, cells, 3), dtype=np.uint8), np.ones((16, 16, 1), np.uint8))


def make_boxes(count: int, size: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x0, y0 = rng.uniform(0, size * 0.7, count), rng.uniform(0, size * 0.7, count)
    w, h = rng.uniform(32, size * 0.3, count), rng.uniform(32, size * 0.3, count)
    return np.stack([x0, y0, x0 + w, y0 + h], axis=1)


def timed(function: Any) -> tuple[Any, float]:
    start = time.perf_counter()
    out = function()
    return out, time.perf_counter() - start


def identical(ours: list[dict[str, Any]], reference: list[dict[str, Any]]) -> str:
    if len(ours) != len(reference):
        return f"NO ({len(ours)} vs {len(reference)} masks)"
    flipped = sum(
        int((a["segmentation"] != b["segmentation"]).sum()) for a, b in zip(ours, reference, strict=True)
    )
    iou = max(
        (abs(a["predicted_iou"] - b["predicted_iou"]) for a, b in zip(ours, reference, strict=True)),
        default=0,
    )
    return f"same count; {flipped} differing mask pixels; max |IoU diff| {iou:.1e}"


def summary(runs: list[tuple[float, float]]) -> str:
    """Median times and ratios of interleaved (ours, reference) runs. Each ratio pairs two runs made back
    to back, so a slow spell of the machine weighs on both sides of it."""
    ours, reference = np.array(runs).T
    ratios = ours / reference
    line = (
        f"  median: ours {np.median(ours):.1f} s, reference {np.median(reference):.1f} s, "
        f"ratio {np.median(ratios):.3f} ({np.median(reference / ours):.1f}x faster)"
    )
    return line if len(runs) == 1 else f"{line}; ratios {ratios.min():.3f}-{ratios.max():.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="sam_vit_b", choices=[*sorted(REFERENCE_NAMES), "demo_sam"])
    parser.add_argument("--height", type=int, help="demo_sam: image height (default: --size)")
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--boxes", type=int, default=100)
    parser.add_argument("--settings", nargs="+", default=["default", "loose", "boxes"])
    parser.add_argument("--skip-reference", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--repeats", type=int, default=1, help="interleaved ours/reference runs per setting (median ratio)"
    )
    args = parser.parse_args()

    from segment_anything import SamAutomaticMaskGenerator

    from grounded_sam.devices import cpu_capability
    from grounded_sam.sam.everything import MaskGenerator

    print(f"CPU: {cpu_capability()}; load average {os.getloadavg()}")
    ours_model, reference_model = build_models(args.model, args.seed)
    image = make_image(args.size, args.seed, args.model, args.height)
    print(
        f"{args.model}, {'trained' if args.model == 'demo_sam' else 'random'} weights, "
        f"{image.shape[0]}x{image.shape[1]} image, {torch.get_num_threads()} threads, "
        f"{args.repeats} interleaved run(s) per implementation and setting"
    )
    reference_times: dict[str, float] = {}
    for name in args.settings:
        if name == "boxes":
            continue
        params = SETTINGS[name]
        print(f"\n[{name}] {params or 'reference defaults'}")
        runs = []
        for repeat in range(args.repeats):
            generator = MaskGenerator(ours_model, **params)
            ours, ours_time = timed(lambda g=generator: g.generate(image))
            if repeat == 0:
                stats = generator.stats
                print(
                    f"  masks: {stats.candidates} predicted, {stats.above_iou} upsampled (past the IoU "
                    f"filter), {stats.stable} stable, {stats.before_nms} into NMS, {len(ours)} kept"
                )
            if args.skip_reference:
                print(f"  run {repeat + 1}: ours {ours_time:6.1f} s")
                continue
            reference_generator = SamAutomaticMaskGenerator(reference_model, **params)
            reference, reference_time = timed(lambda g=reference_generator: g.generate(image))
            runs.append((ours_time, reference_time))
            print(
                f"  run {repeat + 1}: ours {ours_time:6.1f} s, reference {reference_time:6.1f} s, "
                f"ratio {ours_time / reference_time:.3f}; outputs: {identical(ours, reference)}"
            )
            del ours, reference  # thousands of full-size masks each
        if runs:
            reference_times[name] = float(np.median([reference for _, reference in runs]))
            print(summary(runs))
    if "boxes" in args.settings:
        # No filters: every box's mask is upsampled and scored (the most work this mode can do).
        boxes = make_boxes(args.boxes, args.size, args.seed)
        print(f"\n[boxes] object-aware mode, {len(boxes)} box prompts, {SETTINGS['loose']}")
        runs = {}
        for precision in ("float32", "bfloat16"):
            generator = MaskGenerator(ours_model, **SETTINGS["loose"], precision=precision)
            runs[precision], box_time = timed(lambda g=generator: g.generate_from_boxes(image, boxes))
            print(f"  {precision}: {len(runs[precision])} masks kept, {box_time:.1f} s")
            for name, reference_time in reference_times.items():
                ratio = box_time / reference_time
                print(f"    vs the reference's {name} grid run: ratio {ratio:.3f} ({1 / ratio:.1f}x faster)")
        print(f"  bfloat16 vs float32 masks: {agreement(runs['bfloat16'], runs['float32'])}")


def agreement(fast: list[dict[str, Any]], exact: list[dict[str, Any]]) -> str:
    """How well each mask of ``fast`` matches its best counterpart in ``exact`` (box prompts: same order)."""
    if not fast or not exact:
        return f"{len(fast)} vs {len(exact)} masks"
    from grounded_sam.ops.masks import mask_ious

    exact_masks = np.stack([record["segmentation"] for record in exact])
    best = [mask_ious(np.broadcast_to(r["segmentation"], exact_masks.shape), exact_masks).max() for r in fast]
    return (
        f"{len(fast)} vs {len(exact)} masks, best-match IoU mean {np.mean(best):.4f}, min {np.min(best):.4f}"
    )


if __name__ == "__main__":
    main()
