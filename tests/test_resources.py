"""The model's use of memory and of the GIL."""
import os
import threading
import time

import numpy as np

import pyllama
from sanitizer import measures_memory


def _rss_mib() -> dict:
    """Resident memory split into anonymous (heap: copies) and file-backed (mapped file pages)."""
    with open("/proc/self/status") as f:
        return {k: int(v.split()[0]) / 1024 for k, v in (line.split(":", 1) for line in f)
                if k in ("RssAnon", "RssFile")}


@measures_memory
def test_weights_are_mapped_not_copied(demo_model):
    file = pyllama._core.GGUFFile(str(demo_model))
    before = _rss_mib()
    core_model = pyllama._core.LlamaModel(file)
    loaded = _rss_mib()
    # Loading the model copies only the norm vectors (~140 KiB) to the heap.
    assert loaded["RssAnon"] - before["RssAnon"] < 4, (before, loaded)

    model = pyllama.Model(demo_model, n_ctx=256, n_threads=1)
    ready = _rss_mib()
    model.logits(list(range(100, 116)))
    ran = _rss_mib()
    # A forward pass reads every weight (94 MiB): as mapped file pages, not as heap copies.
    assert ran["RssAnon"] - ready["RssAnon"] < 16, (ready, ran)
    del core_model, model


def test_the_gil_is_released_while_the_core_computes(demo_model):
    model = pyllama.Model(demo_model, n_ctx=256, n_threads=1)
    tokens = np.random.default_rng(0).integers(100, 40000, 128).tolist()
    done = threading.Event()
    worker = threading.Thread(target=lambda: (model.logits(tokens), done.set()))
    ticks = 0
    start = time.perf_counter()
    worker.start()
    while not done.is_set():
        ticks += 1
        time.sleep(0.001)
    worker.join()
    elapsed = time.perf_counter() - start
    # With the GIL held for the whole forward pass this loop would run only once or twice.
    assert elapsed > 0.05 and ticks > 10, (ticks, elapsed)
