"""SAM predictor speed and memory: ours vs segment_anything vs transformers, on identical random weights.

Each implementation runs in its own subprocess (so peak RSS is its own), on the same random ViT-B
weights and the same image, and reports: ``set_image`` time (image encoder + pre-processing), decoding
time for 1 box and for 20 boxes (masks at the original resolution), and peak RSS. ``ours_bf16`` is ours
with ``precision="bfloat16"`` (fast on CPUs with bfloat16 matrix units such as Intel AMX; not exact).

    python benchmarks/bench_sam.py [--model sam_vit_b] [--repeats 2] [--threads 2]
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

IMPLEMENTATIONS = ("ours", "ours_bf16", "reference", "transformers")
OURS = ("ours", "ours_bf16")


def make_weights(folder: Path, model: str, seed: int = 0) -> Path:
    """Random weights for ``model`` in the official layout (every parameter randomised, seeded)."""
    from grounded_sam.sam import build_sam

    sam = build_sam(model, pretrained=False, device="cpu")
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for tensor in sam.state_dict().values():
            if tensor.is_floating_point():
                tensor.copy_(torch.randn(tensor.shape, generator=generator) * 0.02)
    path = folder / f"{model}_random.pth"
    torch.save(sam.state_dict(), path)
    return path


def make_image(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.kron(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8), np.ones((16, 16, 1), np.uint8))


def make_boxes(count: int, height: int, width: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x1, y1 = rng.uniform(0, width * 0.6, count), rng.uniform(0, height * 0.6, count)
    w, h = rng.uniform(40, width * 0.4, count), rng.uniform(40, height * 0.4, count)
    return np.stack([x1, y1, x1 + w, y1 + h], axis=1)


def timed(function: Any, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        best = min(best, time.perf_counter() - start)
    return best


def run_ours(
    weights: Path, image: np.ndarray, boxes: np.ndarray, repeats: int, precision: str = "float32"
) -> dict[str, float]:
    from grounded_sam.sam import SamPredictor, build_sam

    predictor = SamPredictor(build_sam(checkpoint=weights, device="cpu"), precision=precision)

    def encode_afresh() -> None:
        predictor.reset_image()  # set_image keeps the embedding of identical pixels: measure real work
        predictor.set_image(image)

    encode = timed(encode_afresh, repeats)
    one = timed(lambda: predictor.predict(box=boxes[0], multimask_output=False), repeats * 3)
    many = timed(lambda: predictor.predict_boxes(boxes, multimask_output=False), repeats * 3)
    return {"set_image": encode, "decode_1": one, f"decode_{len(boxes)}": many}


def run_reference(weights: Path, image: np.ndarray, boxes: np.ndarray, repeats: int) -> dict[str, float]:
    from segment_anything import SamPredictor, sam_model_registry

    predictor = SamPredictor(sam_model_registry["vit_b"](checkpoint=str(weights)).eval())
    encode = timed(lambda: predictor.set_image(image), repeats)
    one = timed(lambda: predictor.predict(box=boxes[0], multimask_output=False), repeats * 3)

    def decode_many() -> None:
        transformed = predictor.transform.apply_boxes_torch(
            torch.as_tensor(boxes, dtype=torch.float), image.shape[:2]
        )
        predictor.predict_torch(None, None, boxes=transformed, multimask_output=False)

    many = timed(decode_many, repeats * 3)
    return {"set_image": encode, "decode_1": one, f"decode_{len(boxes)}": many}


def run_transformers(weights: Path, image: np.ndarray, boxes: np.ndarray, repeats: int) -> dict[str, float]:
    """The route a transformers user writes: SamProcessor + SamModel, embeddings computed once."""
    from transformers import SamConfig, SamImageProcessor, SamModel, SamProcessor

    from grounded_sam.sam.convert_hf import official_sam_to_hf

    model = SamModel(SamConfig()).eval()
    model.load_state_dict(official_sam_to_hf(torch.load(weights, weights_only=True)), strict=False)
    processor = SamProcessor(image_processor=SamImageProcessor())
    state: dict[str, Any] = {}

    def encode() -> None:
        inputs = processor(images=image, return_tensors="pt")
        with torch.inference_mode():
            state["embeddings"] = model.get_image_embeddings(inputs["pixel_values"])
        state["inputs"] = inputs

    def decode(box_array: np.ndarray) -> None:
        inputs = processor(images=image, input_boxes=[box_array.tolist()], return_tensors="pt")
        with torch.inference_mode():
            outputs = model(
                image_embeddings=state["embeddings"],
                input_boxes=inputs["input_boxes"],
                multimask_output=False,
            )
        processor.image_processor.post_process_masks(
            outputs.pred_masks, inputs["original_sizes"], inputs["reshaped_input_sizes"]
        )

    encode_time = timed(encode, repeats)
    one = timed(lambda: decode(boxes[:1]), repeats * 3)
    many = timed(lambda: decode(boxes), repeats * 3)
    return {"set_image": encode_time, "decode_1": one, f"decode_{len(boxes)}": many}


def worker(name: str, weights: Path, repeats: int, threads: int, box_count: int) -> None:
    torch.set_num_threads(threads)
    image = make_image()
    boxes = make_boxes(box_count, *image.shape[:2])
    runners = {
        "ours": run_ours,
        "ours_bf16": functools.partial(run_ours, precision="bfloat16"),
        "reference": run_reference,
        "transformers": run_transformers,
    }
    results = runners[name](weights, image, boxes, repeats)
    results["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(results))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="sam_vit_b")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--boxes", type=int, default=20)
    parser.add_argument("--only", nargs="*", choices=IMPLEMENTATIONS, default=list(IMPLEMENTATIONS))
    parser.add_argument("--worker", choices=IMPLEMENTATIONS, help=argparse.SUPPRESS)
    parser.add_argument("--weights", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, args.weights, args.repeats, args.threads, args.boxes)
        return
    from grounded_sam.devices import cpu_capability

    print(f"CPU: {cpu_capability()}; load average {os.getloadavg()}")
    with tempfile.TemporaryDirectory() as folder:
        weights = make_weights(Path(folder), args.model)
        results = {}
        for name in args.only:
            command = [sys.executable, __file__, "--worker", name, "--weights", str(weights)]
            command += [
                "--repeats",
                str(args.repeats),
                "--threads",
                str(args.threads),
                "--boxes",
                str(args.boxes),
            ]
            output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
            results[name] = json.loads(output.strip().splitlines()[-1])
    report(results, args.boxes)


def report(results: dict[str, dict[str, float]], box_count: int) -> None:
    metrics = ("set_image", "decode_1", f"decode_{box_count}", "peak_rss_mb")
    print(f"{'':22}" + "".join(f"{m:>16}" for m in metrics))
    for name, values in results.items():
        print(f"{name:22}" + "".join(f"{values[m]:>16.3f}" for m in metrics))
    for ours in (n for n in OURS if n in results):
        for other in (n for n in results if n not in OURS):
            ratios = "".join(f"{results[ours][m] / results[other][m]:>16.3f}" for m in metrics)
            print(f"{ours + '/' + other:22}" + ratios)


if __name__ == "__main__":
    main()
