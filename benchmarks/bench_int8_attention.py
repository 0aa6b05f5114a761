"""Why the int8 encoder's attention stays float32: one global ViT-B attention (12 heads over a 64×64 grid,
head dim 64, decomposed relative positions), float32 against int8 products built from stock PyTorch ops.

``float32`` is what every precision runs (:class:`~grounded_sam.sam.fast.image_encoder.FastRelPosAttention`'s
bias chunks into PyTorch's fused flash-attention kernel). ``int8`` is the best route found without a fused
int8 attention kernel: per head and band of query rows, q·kᵀ by fbgemm (q quantized per call, each key a
per-channel int8 "weight"), the bias added, exp(s - row max), then p·v by fbgemm with p at the fixed
7-bit scale 1/127 (row maxima are 1) and a column of ones beside v for the row sums. Its products are
cheaper, but the passes over the (queries, keys) scores between them cost more than float32 flash
attention saves by never writing them out (AVX2-capped Zen 4, 1 thread: int8 1.04x float32's CPU time,
relative error 0.094; 2 threads, busy machine: about 3x). Both run alternately in this process; CPU and
wall times of the best round, and int8's relative error against float32.

    python benchmarks/bench_int8_attention.py [--threads 2] [--repeats 3] [--band 256]
    ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 FBGEMM_ENABLE_INSTRUCTIONS=AVX2 python ...  # plain AVX2
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable

import torch

from grounded_sam.devices import cpu_capability
from grounded_sam.sam.fast.image_encoder import FastRelPosAttention
from grounded_sam.sam.fast.int8 import Int8Linear
from grounded_sam.sam.modeling.image_encoder import relative_position_table

HEADS, GRID, HEAD_DIM = 12, 64, 64  # ViT-B's global blocks at 1024 px


def global_attention() -> tuple[FastRelPosAttention, torch.Tensor, torch.Tensor, torch.Tensor]:
    """A random global attention and its q (scaled like SAM's: SDPA divides by √hd), k and v."""
    generator = torch.Generator().manual_seed(0)
    dim = HEADS * HEAD_DIM
    attention = FastRelPosAttention(dim, HEADS, True, True, 0, (GRID, GRID)).eval()
    with torch.no_grad():
        for parameter in attention.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.3)
    q, k, v = (torch.randn(1, HEADS, GRID * GRID, HEAD_DIM, generator=generator) for _ in range(3))
    return attention, q, k, v


def int8_attention(
    attention: FastRelPosAttention, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, band: int
) -> torch.Tensor:
    """(1, heads, tokens, hd) q, k, v -> (1, tokens, heads, hd) with both products in int8 (see above)."""
    tokens, scale = q.shape[2], HEAD_DIM**-0.5
    grid_q = q[0].view(HEADS, GRID, GRID, HEAD_DIM)
    rows = torch.einsum("ayxc,ykc->ayxk", grid_q, relative_position_table(attention.rel_pos_h, GRID))
    rows = rows.contiguous()
    cols = torch.einsum("ayxc,xkc->ayxk", grid_q, relative_position_table(attention.rel_pos_w, GRID))
    cols = cols.contiguous()
    ones = torch.ones(1, tokens)
    out = q.new_empty(1, tokens, HEADS, HEAD_DIM)
    band = max(GRID, band - band % GRID)  # whole grid rows, so the bias broadcasts over (rows, cols)
    for head in range(HEADS):
        keys = Int8Linear(k[0, head] * scale, None)
        values = Int8Linear(torch.cat([v[0, head].t(), ones]), None)  # (hd + 1, tokens)
        values.input_qparams = (1 / 127, 0)  # exp(s - row max) lies in [0, 1]
        for start in range(0, tokens, band):
            span, grid_rows = slice(start, start + band), slice(start // GRID, (start + band) // GRID)
            scores = keys(q[0, head, span]).view(-1, GRID, GRID, GRID)  # (grid rows, x, key rows, key cols)
            scores += rows[head, grid_rows, :, :, None]
            scores += cols[head, grid_rows, :, None, :]
            scores = scores.view(-1, tokens)
            scores.sub_(scores.amax(dim=1, keepdim=True)).exp_()
            weighted = values(scores)
            out[0, span, head] = weighted[:, :HEAD_DIM] / weighted[:, HEAD_DIM:]
    return out


def best_times(function: Callable[[], object], rounds: list[tuple[float, float]]) -> None:
    wall, cpu = time.perf_counter(), time.process_time()
    function()
    rounds.append((time.perf_counter() - wall, time.process_time() - cpu))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--band", type=int, default=256, help="query tokens per int8 band")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    fbgemm = os.environ.get("FBGEMM_ENABLE_INSTRUCTIONS", "native")
    print(f"CPU: {cpu_capability()}, fbgemm {fbgemm}, {args.threads} threads; load {os.getloadavg()}")
    attention, q, k, v = global_attention()
    variants = {
        "float32": lambda: attention._attend_with_rel_pos(q, k, v, GRID, GRID),
        "int8": lambda: int8_attention(attention, q, k, v, args.band),
    }
    rounds: dict[str, list[tuple[float, float]]] = {name: [] for name in variants}
    with torch.inference_mode():
        for _ in range(args.repeats):
            for name, function in variants.items():
                best_times(function, rounds[name])
        exact, approximate = (function() for function in variants.values())
    best = {name: (min(w for w, _ in times), min(c for _, c in times)) for name, times in rounds.items()}
    for name, (wall, cpu) in best.items():
        print(f"{name:8} one global block: wall {wall:.3f} s, CPU {cpu:.3f} s")
    ratio_wall, ratio_cpu = (best["int8"][i] / best["float32"][i] for i in (0, 1))
    error = float((approximate - exact).norm() / exact.norm())
    print(f"int8 / float32: wall {ratio_wall:.3f}, CPU {ratio_cpu:.3f}; int8 relative error {error:.4f}")
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
