"""The exported ViT encoder in ONNX Runtime: attention in bands of query rows (what ``export_encoder``
writes) vs the plain network's full relative-position bias, one run each.

The same random ViT weights are exported both ways; each graph then runs in its own subprocess on the
same input, which reports its peak RSS (ONNX Runtime and numpy only; torch is not imported there) and the
time of one encoder run. The closing lines give the
ratios, the largest output difference, the CPU capability and the load average (the machine is shared).

    python benchmarks/bench_onnx_encoder.py [--model sam_vit_b] [--threads 2]
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
from peak_rss import peak_rss_mb

KINDS = ("banded", "plain")


def export(model_name: str, kind: str, path: Path) -> dict[str, int]:
    import onnx
    import torch

    from grounded_sam.sam.build import build_sam
    from grounded_sam.sam.onnx import export as onnx_export

    torch.manual_seed(0)
    model = build_sam(model_name, pretrained=False, device="cpu").eval()
    if kind == "plain":
        onnx_export._chunked_attention = onnx_export.plain  # the plain network's full bias
    onnx_export.export_encoder(model, path, 18, external_data=False)
    return {"nodes": len(onnx.load(str(path), load_external_data=False).graph.node)}


def run(path: Path, threads: int, out: Path) -> dict[str, float]:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    size = session.get_inputs()[0].shape[-1]
    image = np.random.default_rng(0).standard_normal((1, 3, size, size)).astype(np.float32)
    start = time.perf_counter()
    (embedding,) = session.run(None, {"input_image": image})
    seconds = time.perf_counter() - start
    np.save(out, embedding)
    return {
        "seconds": seconds,
        "peak_rss_mb": peak_rss_mb(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="sam_vit_b")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--worker", nargs=2, help=argparse.SUPPRESS)  # (export | run, kind)
    parser.add_argument("--folder", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        step, kind = args.worker
        path = args.folder / f"{kind}.onnx"
        done = (
            export(args.model, kind, path)
            if step == "export"
            else run(path, args.threads, args.folder / f"{kind}.npy")
        )
        print(json.dumps(done))
        return
    with tempfile.TemporaryDirectory() as tmp:
        results = {}
        for kind in KINDS:
            base = [sys.executable, __file__, "--model", args.model, "--threads", str(args.threads)]
            base += ["--folder", tmp, "--worker"]
            results[kind] = {}
            for step in ("export", "run"):
                done = subprocess.run([*base, step, kind], check=True, capture_output=True, text=True)
                results[kind] |= json.loads(done.stdout.splitlines()[-1])
            print(kind, results[kind], flush=True)
        difference = np.abs(np.load(f"{tmp}/banded.npy") - np.load(f"{tmp}/plain.npy")).max()
    banded, plain = results["banded"], results["plain"]
    print(f"peak RSS banded / plain: {banded['peak_rss_mb']:.0f} MB / {plain['peak_rss_mb']:.0f} MB")
    print(f"one encoder run banded / plain: {banded['seconds'] / plain['seconds']:.2f}")
    print(f"largest embedding difference: {difference:.2e}")
    import torch

    print(f"torch CPU capability: {torch.backends.cpu.get_cpu_capability()}; load average: {os.getloadavg()}")


if __name__ == "__main__":
    main()
