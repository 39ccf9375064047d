"""The thread pool (src/cpp/threadpool.cpp): every chunk of a region runs exactly once whatever
the thread count, a generation step wakes it only for the work worth sharing, and an idle pool
sleeps instead of spinning."""
from __future__ import annotations

import resource
import time

import pytest

import pyllama
from pyllama import _core


@pytest.mark.parametrize("n_threads", [1, 2, 3, 4])
@pytest.mark.parametrize("n_chunks", [1, 2, 7, 64])
def test_every_chunk_runs_once(n_threads, n_chunks):
    # Thousands of regions back to back: workers arrive late, take chunks, or miss regions.
    for chunk_us in (0.0, 2.0):
        _, caller_share, each_once = _core.pool_region_cost(n_threads, 2000, n_chunks, chunk_us)
        assert each_once
        assert 0.0 < caller_share <= 1.0
        if n_threads == 1:
            assert caller_share == 1.0


@pytest.fixture(scope="module")
def demo(demo_model):
    return pyllama.Model(str(demo_model), n_ctx=256, n_threads=2)


def test_regions_per_generated_token(demo):
    # One token's forward pass wakes the pool only for the weight matmuls (Q, K, V, output, gate,
    # up and down per layer, and the logits): the norms, residual adds, rope, KV stores, the
    # activation and (at this context length) attention are too small to share and run inline.
    demo.reset()
    demo.eval(list(range(100, 140)), all_logits=False)
    before = demo._ctx.pool_regions
    for token in range(200, 210):
        demo.eval([token], all_logits=False)
    per_token = (demo._ctx.pool_regions - before) / 10
    n_layer = demo._model.n_layer
    assert per_token <= 7 * n_layer + 1


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)  # every thread of this process
    return usage.ru_utime + usage.ru_stime


def test_idle_pool_sleeps(demo):
    demo.reset()
    demo.eval(list(range(100, 120)), all_logits=False)
    for token in range(200, 205):
        demo.eval([token], all_logits=False)
    time.sleep(0.1)  # workers spin for a few milliseconds after the last region, then sleep
    before, start = cpu_seconds(), time.perf_counter()
    time.sleep(0.5)
    used = cpu_seconds() - before
    assert used < 0.05 * (time.perf_counter() - start)  # a spinning worker would use ~100%
    # and the pool still works after sleeping
    assert demo.eval([300], all_logits=False).shape == (demo.n_vocab,)


@pytest.mark.parametrize("n_threads", [1, 2, 3])
@pytest.mark.parametrize("fail_chunk", [0, 5, 63])
def test_exception_in_a_chunk_reaches_the_caller(n_threads, fail_chunk):
    message, next_region_ok = _core.pool_after_failure(n_threads, 64, fail_chunk)
    assert message == f"chunk {fail_chunk} failed"
    assert next_region_ok
