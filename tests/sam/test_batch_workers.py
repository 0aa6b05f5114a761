"""map_batches: order, one worker per thread, per-thread context and thread count, errors; and the
generator's output with batches decoded on several threads."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator

import cv2
import numpy as np
import pytest
import torch

from grounded_sam.sam.everything import MaskGenerator, batch_workers
from grounded_sam.sam.everything.batch_workers import map_batches, worker_count
from tests.sam.test_everything import LOOSE, twins


@pytest.fixture
def threads() -> Iterator[None]:
    """Restores the caller's intra-op thread count after a test that changes it."""
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_outputs_keep_the_order_of_the_items() -> None:
    rng = np.random.default_rng(0)
    delays = rng.uniform(0, 0.01, 20)

    def make_worker():
        def work(index: int) -> int:
            time.sleep(delays[index])  # later items often finish first
            return index * index

        return work

    assert map_batches(make_worker, list(range(20)), 3, torch.inference_mode) == [i * i for i in range(20)]


def test_each_thread_has_its_own_worker_context_and_one_intra_op_thread() -> None:
    made, seen = [], []
    lock = threading.Lock()

    class Worker:
        def __init__(self) -> None:
            with lock:
                made.append(threading.get_ident())

        def __call__(self, item: int) -> tuple[int, int, bool, int]:
            time.sleep(0.005)
            with lock:
                seen.append(threading.get_ident())
            return item, id(self), torch.is_inference_mode_enabled(), torch.get_num_threads()

    caller_threads = torch.get_num_threads()
    out = map_batches(Worker, list(range(12)), 3, torch.inference_mode)
    assert [item for item, *_ in out] == list(range(12))
    assert len(made) == len(set(made)) <= 3  # one worker per thread, made in that thread
    assert set(seen) <= set(made)
    assert len({worker for _, worker, _, _ in out}) == len(made)
    assert all(inference and count == 1 for _, _, inference, count in out)
    assert not torch.is_inference_mode_enabled()
    assert torch.get_num_threads() == caller_threads


def test_an_error_stops_the_run_and_is_raised() -> None:
    started = []

    def make_worker():
        def work(item: int) -> int:
            started.append(item)
            if item == 3:
                raise ValueError("bad batch")
            time.sleep(0.002)
            return item

        return work

    with pytest.raises(ValueError, match="bad batch"):
        map_batches(make_worker, list(range(200)), 2, torch.inference_mode)
    assert len(started) < 200  # no item was started after the error (beyond those in flight)


def test_one_worker_runs_in_the_callers_thread() -> None:
    def make_worker():
        return lambda item: (item, threading.get_ident(), torch.is_inference_mode_enabled())

    out = map_batches(make_worker, [1, 2], 1, torch.inference_mode)
    assert out == [(1, threading.get_ident(), True), (2, threading.get_ident(), True)]
    assert map_batches(make_worker, [], 4, torch.inference_mode) == []


def test_worker_count(threads: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(batch_workers, "usable_cores", lambda: 8)
    torch.set_num_threads(3)
    assert worker_count(torch.device("cpu"), 10) == 3
    assert worker_count(torch.device("cpu"), 2) == 2
    assert worker_count(torch.device("cpu"), 0) == 1
    assert worker_count(torch.device("cuda"), 10) == 1
    # More intra-op threads than cores: one single-threaded worker per core, not one per thread.
    monkeypatch.setattr(batch_workers, "usable_cores", lambda: 2)
    torch.set_num_threads(6)
    assert worker_count(torch.device("cpu"), 10) == 2


def test_usable_cores_is_the_affinity_mask() -> None:
    assert 1 <= batch_workers.usable_cores() <= (os.cpu_count() or 1)
    if hasattr(os, "sched_getaffinity"):
        assert batch_workers.usable_cores() == len(os.sched_getaffinity(0))


def test_generator_output_does_not_depend_on_the_thread_count(
    threads: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    rng = np.random.default_rng(1)
    image = cv2.resize(rng.integers(0, 256, (5, 7, 3)).astype(np.float32), (280, 200)).astype(np.uint8)
    model = twins(1)[0]
    params = {**LOOSE, "points_per_side": 8, "points_per_batch": 7, "box_nms_thresh": 0.95}
    torch.set_num_threads(1)
    generator = MaskGenerator(model, **params)
    sequential = generator.generate(image)
    monkeypatch.setattr(batch_workers, "usable_cores", lambda: 4)  # as if there were four cores
    torch.set_num_threads(4)  # four threads decode the ten batches
    parallel = generator.generate(image)
    assert torch.get_num_threads() == 4
    assert len(sequential) == len(parallel) >= 5
    for a, b in zip(parallel, sequential, strict=True):
        assert a["point_coords"] == b["point_coords"]
        np.testing.assert_array_equal(a["segmentation"], b["segmentation"])
        assert abs(a["predicted_iou"] - b["predicted_iou"]) < 1e-5
        assert abs(a["stability_score"] - b["stability_score"]) < 1e-5
    assert generator.stats.prompts == 64
