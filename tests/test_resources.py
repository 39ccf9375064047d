"""The model's use of memory and of the GIL."""
import os
import threading
import time

import numpy as np

import pyllama


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def test_loading_maps_the_weights_instead_of_copying_them(demo_model):
    size = os.path.getsize(demo_model)
    before = _rss_bytes()
    model = pyllama.Model(demo_model, n_ctx=256, n_threads=1)
    grown = _rss_bytes() - before
    # Loading reads the header, the vocabulary (~10 MiB as Python objects) and 61 small norm
    # vectors, each of which faults in the kernel's read-ahead window around it (~20 MiB here);
    # a copy of the weights would add the whole file (94 MiB) on top. The KV cache is left to
    # the OS to commit as it fills.
    assert grown < size * 0.5, f"RSS grew by {grown / 2**20:.0f} MiB for a {size / 2**20:.0f} MiB file"
    del model


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
