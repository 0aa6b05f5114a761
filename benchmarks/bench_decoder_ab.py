"""Segment everything on the demo model, this checkout against another one (e.g. main before a change), in one
process: the two packages are imported side by side and run alternately, so a busy spell of the machine
weighs on both.

Cases: ``small`` is the small-encoder case of ``bench_everything.py`` (demo model, 768 x 1024 scene,
32 x 32 grid, no filters); ``demo`` is the demo pipeline's generator (demo model, 256 x 256 scene,
``DEMO_EVERYTHING``).
Prints per case the median CPU (process) and wall times of each side, the median of the paired
this/baseline ratios, whether the masks are identical, the CPU capability and the load average.

    python benchmarks/bench_decoder_ab.py --baseline /tmp/base [--cases small demo] [--repeats 5]
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

HERE = Path(__file__).resolve().parents[1]


class Package:
    """``grounded_sam`` imported from one checkout, kept apart from the other's: :meth:`activate` puts its
    modules (and its root, for modules imported lazily) in front of every import."""

    def __init__(self, root: Path) -> None:
        self.root = str(root)
        self.modules: dict[str, Any] = {}
        self.activate()
        importlib.import_module("grounded_sam.sam.everything")
        importlib.import_module("grounded_sam.demo")
        self.keep()

    def activate(self) -> None:
        for name in [name for name in sys.modules if name.split(".")[0] == "grounded_sam"]:
            del sys.modules[name]
        sys.modules.update(self.modules)
        sys.path[:] = [path for path in sys.path if path not in ROOTS]
        sys.path.insert(0, self.root)
        ROOTS.add(self.root)

    def keep(self) -> None:
        """Remember the modules imported since :meth:`activate` (e.g. lazily, during a run)."""
        self.modules = {
            name: module for name, module in sys.modules.items() if name.split(".")[0] == "grounded_sam"
        }
        wrong = [
            name for name, module in self.modules.items() if not str(module.__file__).startswith(self.root)
        ]
        if wrong:
            raise RuntimeError(f"modules from another checkout: {wrong[:3]}")


ROOTS: set[str] = set()


def case_inputs(case: str, package: Package) -> tuple[Any, np.ndarray]:
    """The generator of ``case`` built from one package, and its image."""
    modules = package.modules
    sam_package = modules["grounded_sam.sam"]
    everything = modules["grounded_sam.sam.everything"]
    data = modules["grounded_sam.data"]
    sam = sam_package.build_sam("demo_sam", device="cpu").eval()
    if case == "small":
        generator = everything.MaskGenerator(sam, pred_iou_thresh=0.0, stability_score_thresh=0.0)
        config = data.SceneConfig(size=(768, 1024))
    else:
        generator = everything.MaskGenerator(sam, config=modules["grounded_sam.demo"].DEMO_EVERYTHING)
        config = data.SceneConfig(size=(256, 256))
    return generator, next(iter(data.iter_scenes(0, 1, config))).image


def run_once(generator: Any, image: np.ndarray) -> tuple[Any, float, float]:
    cpu, wall = time.process_time(), time.perf_counter()
    result = generator.generate(image)
    return result, time.process_time() - cpu, time.perf_counter() - wall


def same_masks(ours: list[dict[str, Any]], base: list[dict[str, Any]]) -> str:
    if len(ours) != len(base):
        return f"NO: {len(ours)} vs {len(base)} masks"
    flipped = sum(
        int((a["segmentation"] != b["segmentation"]).sum()) for a, b in zip(ours, base, strict=True)
    )
    return f"{len(ours)} masks each, {flipped} differing pixels"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--baseline", type=Path, required=True, help="checkout to compare against")
    parser.add_argument("--cases", nargs="+", default=["small", "demo"], choices=["small", "demo"])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    print(
        f"cpu capability {torch.backends.cpu.get_cpu_capability()}, "
        f"AMX {'yes' if 'amx' in Path('/proc/cpuinfo').read_text() else 'no'}, "
        f"threads {torch.get_num_threads()}, load average {os.getloadavg()}"
    )
    sides = {"this": Package(HERE), "baseline": Package(args.baseline.resolve())}
    for case in args.cases:
        inputs, results = {}, {}
        times: dict[str, list[tuple[float, float]]] = {name: [] for name in sides}
        for name, package in sides.items():
            package.activate()
            inputs[name] = case_inputs(case, package)
            results[name] = run_once(*inputs[name])[0]  # warm-up
            package.keep()
        for _ in range(args.repeats):
            for name, package in sides.items():
                package.activate()
                times[name].append(run_once(*inputs[name])[1:])
        this, base = np.array(times["this"]), np.array(times["baseline"])
        print(
            f"{case}: CPU this {np.median(this[:, 0]):.3f} s, baseline {np.median(base[:, 0]):.3f} s, "
            f"ratio {np.median(this[:, 0] / base[:, 0]):.3f}; wall this {np.median(this[:, 1]):.3f} s, "
            f"baseline {np.median(base[:, 1]):.3f} s, ratio {np.median(this[:, 1] / base[:, 1]):.3f}; "
            f"{same_masks(results['this'], results['baseline'])}; load {os.getloadavg()[0]:.1f}"
        )


if __name__ == "__main__":
    main()
