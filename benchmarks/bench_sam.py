"""SAM predictor speed and memory: ours vs segment_anything vs transformers, on identical random weights.

Each implementation runs in its own subprocess (so peak RSS is its own), on the same random ViT-B
weights and the same image, and reports: ``set_image`` time (image encoder + pre-processing), decoding
time for 1 box and for 20 boxes (masks at the original resolution), and peak RSS. ``ours_bf16`` is ours
with ``precision="bfloat16"`` (fast on CPUs with bfloat16 matrix units such as Intel AMX; not exact);
``ours_int8`` is ours with ``precision="int8"`` (the encoder's linear layers in int8, x86 CPUs), which
also reports the box-mask mIoU of its masks against float32's on the same model and image: at logit 0,
and at float32's median logit per box (random decoders give near-empty or near-full masks whatever the
box, so the masks at 0 agree trivially), and for ``demo_sam`` (its shipped weights) on its scenes.

``--model mobile_sam`` (random TinyViT) and ``demo_sam`` run only our rows (the references are ViT-only).
``ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2`` runs as a plain AVX2 CPU; fbgemm (int8) is then
capped too (``FBGEMM_ENABLE_INSTRUCTIONS=AVX2``, set here unless given).

    python benchmarks/bench_sam.py [--model sam_vit_b] [--repeats 2] [--threads 2]
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from peak_rss import peak_rss_mb

IMPLEMENTATIONS = ("ours", "ours_bf16", "ours_int8", "reference", "transformers")
OURS = ("ours", "ours_bf16", "ours_int8", "ours_int8_static")
DEMO_MODEL = "demo_sam"
SCENES = 8  # demo scenes the int8 row's mIoU is measured on
CALIBRATION_SCENES = 16  # other scenes (seed 2000) that ours_int8_static's input ranges come from


def make_weights(folder: Path, model: str, seed: int = 0) -> Path:
    """Random weights for ``model`` in the official layout (every parameter randomised, seeded); the
    shipped weights for the demo model."""
    from grounded_sam.sam import build_sam
    from grounded_sam.weights import bundled_path

    if model == DEMO_MODEL:
        return bundled_path("demo_sam.safetensors")
    sam = build_sam(model, pretrained=False, device="cpu")
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in sam.state_dict().items():
            if tensor.is_floating_point():
                values = torch.randn(tensor.shape, generator=generator) * 0.02
                # TinyViT's batch-norm variances must stay positive (ViT models have none).
                tensor.copy_(values.abs() + 0.5 if name.endswith("running_var") else values)
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
    weights: Path,
    image: np.ndarray,
    boxes: np.ndarray,
    repeats: int,
    precision: str = "float32",
    calibrate: bool = False,
) -> dict[str, float]:
    from grounded_sam.data import iter_scenes
    from grounded_sam.sam import SamPredictor, build_sam
    from grounded_sam.sam.fast.int8 import calibrating, int8_encoder

    predictor = SamPredictor(build_sam(checkpoint=weights, device="cpu"), precision=precision)
    if calibrate:  # static int8 input ranges from the scene generator's images, not from this image
        with calibrating(int8_encoder(predictor.model.image_encoder)):
            for scene in iter_scenes(2000, CALIBRATION_SCENES):
                predictor.reset_image()
                predictor.set_image(scene.image)

    def encode_afresh() -> None:
        predictor.reset_image()  # set_image keeps the embedding of identical pixels: measure real work
        predictor.set_image(image)

    encode = timed(encode_afresh, repeats)
    one = timed(lambda: predictor.predict(box=boxes[0], multimask_output=False), repeats * 3)
    many = timed(lambda: predictor.predict_boxes(boxes, multimask_output=False), repeats * 3)
    results = {
        "set_image": encode,
        "decode_1": one,
        f"decode_{len(boxes)}": many,
        "peak_rss_mb": peak_rss_mb(),
    }
    if precision == "int8":  # after the peak RSS: this builds a float32 predictor beside the int8 one
        results.update(paired_set_image(predictor, image, repeats))
        results.update(int8_agreement(predictor, [image], [boxes]))
        if "demo" in weights.name:
            scenes = list(iter_scenes(1000, SCENES))
            agreement = int8_agreement(predictor, [s.image for s in scenes], [s.boxes for s in scenes])
            results.update({f"scenes_{key}": value for key, value in agreement.items()})
    return results


def paired_set_image(int8: Any, image: np.ndarray, repeats: int) -> dict[str, float]:
    """``set_image`` of float32 and int8 on the same model, alternated in this process ``repeats`` times:
    the best wall and CPU (process) times of each, which a busy machine disturbs less than rows run apart."""
    from grounded_sam.sam import SamPredictor

    exact = SamPredictor(int8.model)
    times: dict[str, list[tuple[float, float]]] = {"float32": [], "int8": []}
    for _ in range(repeats):
        for name, predictor in (("float32", exact), ("int8", int8)):
            predictor.reset_image()
            wall, cpu = time.perf_counter(), time.process_time()
            predictor.set_image(image)
            times[name].append((time.perf_counter() - wall, time.process_time() - cpu))
    best = {name: np.min(np.array(pairs), axis=0) for name, pairs in times.items()}
    return {
        "paired_wall_ratio": float(best["int8"][0] / best["float32"][0]),
        "paired_cpu_ratio": float(best["int8"][1] / best["float32"][1]),
        "paired_float32_cpu": float(best["float32"][1]),
        "paired_int8_cpu": float(best["int8"][1]),
    }


def int8_agreement(int8: Any, images: list[np.ndarray], boxes: list[np.ndarray]) -> dict[str, float]:
    """Mean IoU of an int8 predictor's box masks against float32's (same model): at logit 0, and at
    float32's median logit per box; the mean fraction of the image float32's masks cover, and the mean
    relative error of the int8 embedding (|int8 - float32| / |float32|)."""
    from grounded_sam.ops.masks import mask_ious
    from grounded_sam.sam import SamPredictor

    exact = SamPredictor(int8.model)
    at_zero, at_median, fill, errors = [], [], [], []
    for image, image_boxes in zip(images, boxes, strict=True):
        logits = []
        for predictor in (exact, int8):
            predictor.reset_image()
            predictor.set_image(image)
            logits.append(
                predictor.predict_boxes(image_boxes, multimask_output=False, return_logits=True)[0][:, 0]
            )
        reference, quantized = logits
        errors.append(float((int8.features - exact.features).norm() / exact.features.norm()))
        median = np.median(reference, axis=(1, 2), keepdims=True)
        at_zero.extend(mask_ious(quantized > 0, reference > 0))
        at_median.extend(mask_ious(quantized > median, reference > median))
        fill.extend((reference > 0).mean(axis=(1, 2)))
    return {
        "miou_at_0": float(np.mean(at_zero)),
        "miou_at_median": float(np.mean(at_median)),
        "fill": float(np.mean(fill)),
        "embedding_error": float(np.mean(errors)),
    }


def run_reference(weights: Path, image: np.ndarray, boxes: np.ndarray, repeats: int) -> dict[str, float]:
    from segment_anything import SamPredictor, sam_model_registry

    kind = weights.name.removeprefix("sam_").split("_random")[0]  # vit_b, vit_l or vit_h
    predictor = SamPredictor(sam_model_registry[kind](checkpoint=str(weights)).eval())
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
        "ours_int8": functools.partial(run_ours, precision="int8"),
        "ours_int8_static": functools.partial(run_ours, precision="int8", calibrate=True),
        "reference": run_reference,
        "transformers": run_transformers,
    }
    results = runners[name](weights, image, boxes, repeats)
    results.setdefault("peak_rss_mb", peak_rss_mb())
    print(json.dumps(results))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="sam_vit_b")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--boxes", type=int, default=20)
    choices = (*IMPLEMENTATIONS, "ours_int8_static")  # int8 with calibrated input ranges: on request
    parser.add_argument("--only", nargs="*", choices=choices, default=list(IMPLEMENTATIONS))
    parser.add_argument("--worker", choices=choices, help=argparse.SUPPRESS)
    parser.add_argument("--weights", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, args.weights, args.repeats, args.threads, args.boxes)
        return
    if os.environ.get("ATEN_CPU_CAPABILITY", "").lower() == "avx2":
        os.environ.setdefault("FBGEMM_ENABLE_INSTRUCTIONS", "AVX2")  # the workers inherit it
    from grounded_sam.devices import cpu_capability

    fbgemm = os.environ.get("FBGEMM_ENABLE_INSTRUCTIONS", "native")
    print(f"CPU: {cpu_capability()}, fbgemm {fbgemm}; load average {os.getloadavg()}")
    names = args.only
    if not args.model.startswith("sam_vit"):
        names = [name for name in names if name in OURS]  # the references are ViT-only
    with tempfile.TemporaryDirectory() as folder:
        weights = make_weights(Path(folder), args.model)
        results = {}
        for name in names:
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
        others = [n for n in results if n not in OURS] + (
            ["ours"] if ours != "ours" and "ours" in results else []
        )
        for other in others:
            ratios = "".join(f"{results[ours][m] / results[other][m]:>16.3f}" for m in metrics)
            print(f"{ours + '/' + other:22}" + ratios)
    for name, int8 in results.items():
        if "paired_cpu_ratio" in int8:
            print(
                f"{name} / float32 set_image alternated in one process: "
                f"wall {int8['paired_wall_ratio']:.3f}, "
                f"CPU time {int8['paired_int8_cpu']:.2f} s / {int8['paired_float32_cpu']:.2f} s = "
                f"{int8['paired_cpu_ratio']:.3f}"
            )
        for prefix, where in (("", "the bench image"), ("scenes_", f"{SCENES} demo scenes")):
            if prefix + "miou_at_0" not in int8:
                continue
            print(
                f"{name} box masks vs float32 on {where}: mIoU {int8[prefix + 'miou_at_0']:.4f} at logit 0 "
                f"(float32's masks cover {int8[prefix + 'fill']:.1%} of the image), "
                f"{int8[prefix + 'miou_at_median']:.4f} at float32's median logit per box; embedding "
                f"relative error {int8[prefix + 'embedding_error']:.4f}"
            )


if __name__ == "__main__":
    main()
