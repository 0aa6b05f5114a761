"""Load test of ``grounded-sam serve`` on the demo model: N concurrent clients, a fixed request count.

Starts the real server in a subprocess on a free loopback port, sends ``--requests`` requests from
``--clients`` concurrent clients (httpx, asyncio) and prints requests/s, p50/p95 latency, errors and
the server's resident memory (RSS) at the start and the end, with the CPU capability and load average.

    python benchmarks/bench_serve.py --clients 4 --requests 40 --endpoint segment
    python benchmarks/bench_serve.py --clients 8 --requests 400 --endpoint prompts

``segment`` sends text prompts (the whole pipeline per request, over a few images in turn); ``prompts``
sends clicks on one image, after which every request hits the embedding cache (decoder only).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the tests' server starter
from grounded_sam.data import SceneConfig, make_scene  # noqa: E402
from tests.serve.server import png_bytes, running_server  # noqa: E402

PROMPTS = ("red circle. blue square", "shapes", "green ring. white star", "triangle")


def rss_mb(pid: int) -> float:
    """Resident memory of process ``pid`` in MB (from /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def request_args(endpoint: str, index: int, images: list[bytes]) -> tuple[str, dict]:
    if endpoint == "segment":
        image = images[index % len(images)]
        data = {"prompt": PROMPTS[index % len(PROMPTS)]}
        return "/v1/segment", {"files": {"image": ("i.png", image)}, "data": data}
    x, y = 20 + (index * 37) % 280, 20 + (index * 53) % 200
    body = {"image_id": hashlib.sha256(images[0]).hexdigest(), "points": [[x, y]], "point_labels": [1]}
    return "/v1/segment/prompts", {"json": body}


async def load(url: str, endpoint: str, clients: int, requests: int, images: list[bytes]) -> tuple:
    latencies: list[float] = []
    statuses: list[int] = []
    counter = iter(range(requests))

    async def client(session: httpx.AsyncClient) -> None:
        for index in counter:
            path, kwargs = request_args(endpoint, index, images)
            start = time.perf_counter()
            answer = await session.post(path, **kwargs)
            latencies.append(time.perf_counter() - start)
            statuses.append(answer.status_code)

    async with httpx.AsyncClient(base_url=url, timeout=600) as session:
        start = time.perf_counter()
        await asyncio.gather(*(client(session) for _ in range(clients)))
        elapsed = time.perf_counter() - start
    return elapsed, np.array(latencies), statuses


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--requests", type=int, default=40)
    parser.add_argument("--endpoint", choices=("segment", "prompts"), default="segment")
    parser.add_argument("--max-queue", type=int, default=64, help="the server's --max-queue")
    parser.add_argument("--images", type=int, default=4, help="distinct images (over 8 overflows the cache)")
    parser.add_argument("--rounds", type=int, default=1, help="repeat the load; RSS is printed after each")
    args = parser.parse_args()

    images = [png_bytes(make_scene(seed, SceneConfig(size=(240, 320))).image) for seed in range(args.images)]
    with tempfile.TemporaryDirectory() as folder:
        log = Path(folder) / "server.log"
        server_args = ["--max-queue", str(args.max_queue), "--log-level", "warning"]
        with running_server(log, *server_args) as server:
            pid = server.process.pid
            warm = {"files": {"image": ("i.png", images[0])}, "timeout": 600}
            httpx.post(f"{server.url}/v1/segment", data={"prompt": "shapes"}, **warm)
            clicks = {"points": "[[9, 9]]", "point_labels": "[1]"}
            httpx.post(f"{server.url}/v1/segment/prompts", data=clicks, **warm)
            rss_start = rss_mb(pid)
            elapsed, latencies, statuses, rss_rounds = 0.0, np.zeros(0), [], []
            for _ in range(args.rounds):
                took, times, codes = asyncio.run(
                    load(server.url, args.endpoint, args.clients, args.requests, images)
                )
                elapsed, latencies, statuses = (
                    elapsed + took,
                    np.concatenate([latencies, times]),
                    statuses + codes,
                )
                rss_rounds.append(rss_mb(pid))
            rss_end = rss_rounds[-1]
            cache = httpx.get(f"{server.url}/health").json()["cache"]
    errors = sum(status != 200 for status in statuses)
    print(
        f"endpoint /v1/{args.endpoint}  clients {args.clients}  requests {args.requests}  demo model, 240x320"
    )
    print(
        f"CPU capability {torch.backends.cpu.get_cpu_capability()}, load average "
        f"{' '.join(f'{v:.2f}' for v in os.getloadavg())}, {os.cpu_count()} CPUs"
    )
    print(f"requests/s {len(statuses) / elapsed:.2f}  ({len(statuses)} requests, wall {elapsed:.1f} s)")
    p50, p95 = np.percentile(latencies, [50, 95]) * 1000
    print(f"latency p50 {p50:.0f} ms  p95 {p95:.0f} ms")
    print(f"errors {errors}" + (f"  statuses {sorted(set(statuses))}" if errors else ""))
    print(f"server RSS start {rss_start:.0f} MB  end {rss_end:.0f} MB  growth {rss_end - rss_start:+.0f} MB")
    print("RSS after each round: " + ", ".join(f"{value:.0f} MB" for value in rss_rounds))
    print(f"embedding cache {cache}")


if __name__ == "__main__":
    main()
