"""SAM on ONNX Runtime (float32 and int8) vs our PyTorch predictor vs segment_anything's, in one run.

The same random ViT-B weights are exported with ``export_onnx(..., quantize=True)``; each implementation
then runs in its own subprocess on the same image and boxes and reports ``set_image`` (pre-processing +
image encoder) and the decoding of 1 and of 20 boxes (masks at the original resolution). The closing
lines give the ratios, the CPU capability PyTorch uses and the load average (the machine is shared).
ONNX Runtime uses its own thread pool (one thread per physical core by default).

    python benchmarks/bench_onnx.py [--model sam_vit_b] [--repeats 2] [--threads 2] [--boxes 20]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
from bench_sam import make_boxes, make_image, make_weights, run_ours, run_reference, timed

IMPLEMENTATIONS = ("onnx_float32", "onnx_int8", "ours", "reference")


def run_onnx(folder: Path, precision: str, image, boxes, repeats: int) -> dict[str, float]:
    from grounded_sam.sam.onnx import OnnxSamPredictor

    predictor = OnnxSamPredictor(folder, providers=["CPUExecutionProvider"], precision=precision)

    def encode_afresh() -> None:
        predictor.reset_image()
        predictor.set_image(image)

    encode = timed(encode_afresh, repeats)
    one = timed(lambda: predictor.predict(box=boxes[0], multimask_output=False), repeats * 3)
    many = timed(lambda: predictor.predict_boxes(boxes, multimask_output=False), repeats * 3)
    return {"set_image": encode, "decode_1": one, f"decode_{len(boxes)}": many}


def worker(name: str, weights: Path, folder: Path, repeats: int, threads: int, box_count: int) -> None:
    torch.set_num_threads(threads)
    image = make_image()
    boxes = make_boxes(box_count, *image.shape[:2])
    if name.startswith("onnx_"):
        results = run_onnx(folder, name.removeprefix("onnx_"), image, boxes, repeats)
    elif name == "ours":
        results = run_ours(weights, image, boxes, repeats)
    else:
        results = run_reference(weights, image, boxes, repeats)
    print(json.dumps(results))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="sam_vit_b")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--boxes", type=int, default=20)
    parser.add_argument("--worker", choices=(*IMPLEMENTATIONS, "export"), help=argparse.SUPPRESS)
    parser.add_argument("--weights", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--folder", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker == "export":
        from grounded_sam.sam.onnx import export_onnx

        print(json.dumps(export_onnx(args.weights, args.folder, quantize=True).quantized_accuracy))
        return
    if args.worker:
        worker(args.worker, args.weights, args.folder, args.repeats, args.threads, args.boxes)
        return
    with tempfile.TemporaryDirectory() as tmp:
        weights = make_weights(Path(tmp), args.model)
        # Each step in its own process, so no process holds two networks (ViT-B in ONNX Runtime: ~3 GB).
        command = [sys.executable, __file__, "--worker", "export", "--weights", str(weights)]
        output = subprocess.run(
            [*command, "--folder", str(Path(tmp) / "onnx")], check=True, capture_output=True
        )
        accuracy = output.stdout.decode().strip().splitlines()[-1]
        results = {}
        for name in IMPLEMENTATIONS:
            command = [sys.executable, __file__, "--worker", name, "--weights", str(weights)]
            command += ["--folder", str(Path(tmp) / "onnx"), "--repeats", str(args.repeats)]
            command += ["--threads", str(args.threads), "--boxes", str(args.boxes)]
            output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
            results[name] = json.loads(output.strip().splitlines()[-1])
    report(results, args.boxes)
    print(f"int8 accuracy recorded at export: {accuracy}")


def report(results: dict[str, dict[str, float]], box_count: int) -> None:
    metrics = ("set_image", "decode_1", f"decode_{box_count}")
    print(f"{'seconds':26}" + "".join(f"{m:>14}" for m in metrics))
    for name, values in results.items():
        print(f"{name:26}" + "".join(f"{values[m]:>14.3f}" for m in metrics))
    for onnx in ("onnx_float32", "onnx_int8"):
        for other in ("ours", "reference"):
            ratios = "".join(f"{results[onnx][m] / results[other][m]:>14.3f}" for m in metrics)
            print(f"{onnx + '/' + other:26}" + ratios)
    capability = torch.backends.cpu.get_cpu_capability()
    print(f"CPU capability {capability}, load average {' '.join(f'{v:.2f}' for v in os.getloadavg())}")


if __name__ == "__main__":
    main()
