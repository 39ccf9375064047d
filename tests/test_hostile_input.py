"""Hostile files and arguments: the loader's limits, bad token ids at every public method, a
KV cache too big for the machine, and a model's memory released by close()."""
from __future__ import annotations

import gc
import os
from pathlib import Path

import numpy as np
import pytest
from gguf import GGUFValueType
from gguf.gguf_writer import GGUFValue

import pyllama
from sanitizer import measures_memory
from synthetic import SyntheticConfig, write_synthetic_model

CRASHES = Path(__file__).resolve().parents[1] / "fuzz" / "crashes"
SMALL = SyntheticConfig(n_embd=32, n_head=2, n_layer=1, n_ff=32)


def _write(tmp_path, **metadata):
    def edit(md, weights):
        for key, (value, vtype) in metadata.items():
            md[key] = GGUFValue(value, vtype)
    return write_synthetic_model(tmp_path / "m.gguf", SMALL, edit=edit)


def test_huge_block_count_fails_on_the_first_missing_block_before_allocating():
    # Found by the loader fuzzer: block_count 2^40 made the loader allocate 2^40 layers.
    f = pyllama._core.GGUFFile(str(CRASHES / "loader_block_count_allocates_layers.gguf"))
    with pytest.raises(pyllama.PyllamaError, match=r"missing tensor 'blk\.1\.attn_norm\.weight'"):
        pyllama._core.LlamaModel(f)


def test_huge_block_count_with_a_tensor_of_the_last_block_still_fails(tmp_path):
    n = 1 << 40

    def edit(md, weights):
        md["llama.block_count"] = GGUFValue(n, GGUFValueType.UINT64)
        weights[f"blk.{n - 1}.attn_norm.weight"] = weights["blk.0.attn_norm.weight"]
    path = write_synthetic_model(tmp_path / "m.gguf", SMALL, edit=edit)
    with pytest.raises(pyllama.PyllamaError, match=r"missing tensor 'blk\.1\."):
        pyllama._core.LlamaModel(pyllama._core.GGUFFile(str(path)))


def test_attention_width_that_would_overflow_is_refused(tmp_path):
    path = _write(tmp_path, **{"llama.attention.key_length": (1 << 40, GGUFValueType.UINT64),
                               "llama.attention.value_length": (1 << 40, GGUFValueType.UINT64)})
    with pytest.raises(pyllama.PyllamaError, match="attention width"):
        pyllama._core.LlamaModel(pyllama._core.GGUFFile(str(path)))


@pytest.fixture(scope="module")
def model(demo_model):
    return pyllama.Model(demo_model, n_ctx=64, n_threads=1)


BAD_IDS = [-1, "n_vocab", 2**31, 2**63, np.int64(-5), 1.0, True, None]


@pytest.mark.parametrize("bad", [5, None, np.int32(3), np.array(3)])
def test_token_id_sequences_that_are_not_sequences_raise_value_error(model, bad):
    for method in (model.eval, model.logits, model.detokenize, model.generate):
        with pytest.raises(ValueError, match="sequence of token ids"):
            method(bad)
PUBLIC = {
    "eval": lambda m, i: m.eval([i]),
    "logits": lambda m, i: m.logits([1, i]),
    "detokenize": lambda m, i: m.detokenize([i]),
    "generate": lambda m, i: m.generate([1, i], max_tokens=1),
    "complete": lambda m, i: m.complete([i], max_tokens=1),
    "logit_bias": lambda m, i: m.generate([1], logit_bias={i: 1.0}),
    "tokenizer.decode": lambda m, i: m.tokenizer.decode([i]),
    "tokenizer.token_bytes": lambda m, i: m.tokenizer.token_bytes(i),
    "stream.push": lambda m, i: m.tokenizer.stream().push(i),
}


@pytest.mark.parametrize("method", PUBLIC)
def test_bad_token_ids_raise_value_error_at_every_public_method(model, method):
    for bad in BAD_IDS:
        bad = model.n_vocab if bad == "n_vocab" else bad
        with pytest.raises(ValueError):
            PUBLIC[method](model, bad)
    assert model.n_past <= 1  # nothing bad reached the cache


def test_kv_cache_larger_than_available_memory_is_a_clear_error(demo_model, monkeypatch):
    monkeypatch.setattr(pyllama.model, "available_memory", lambda: 1 << 20)
    with pytest.raises(ValueError, match=r"KV cache for n_ctx=2048 needs 45 MiB \(f16\).*1 MiB"):
        pyllama.Model(demo_model, n_ctx=2048, n_threads=1)
    pyllama.Model(demo_model, n_ctx=8, n_threads=1)  # 180 KiB fits


def _mapped(path: Path) -> bool:
    with open("/proc/self/maps") as f:
        return str(path) in f.read()


def test_close_and_context_manager_release_the_mapping(tmp_path):
    path = write_synthetic_model(tmp_path / "m.gguf", SMALL)
    with pyllama.Model(path, n_ctx=16, n_threads=1) as m:
        assert _mapped(path)
        m.logits([1, 2])
    assert not _mapped(path)
    for use in (lambda: m.logits([1]), lambda: m.n_ctx, lambda: m.generate([1]), m.reset):
        with pytest.raises(ValueError, match="model is closed"):
            use()
    m.close()  # twice is fine
    assert repr(m) == "Model('m.gguf', closed)"

    m = pyllama.Model(path, n_ctx=16, n_threads=1)
    assert _mapped(path)
    del m
    gc.collect()
    assert not _mapped(path)


def _rss_anon_mib() -> float:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("RssAnon:")) / 1024


@measures_memory
def test_a_thousand_generate_calls_leave_memory_flat(model):
    def run(n):
        for k in range(n):
            model.complete([1, 100 + k % 50], max_tokens=1, temperature=0.7, seed=k)
    run(100)  # warm-up: caches, the allocator's pools
    gc.collect()
    before = _rss_anon_mib()
    run(1000)
    gc.collect()
    after = _rss_anon_mib()
    assert after - before < 4, (before, after)


def test_pth_whose_member_header_disagrees_with_the_directory_is_a_clean_error():
    # Found by fuzz/pth_fuzzer.py: zipfile's BadZipFile escaped from opening the pickle member.
    from pyllama.convert.pth_reader import load_pth
    with pytest.raises(pyllama.PyllamaError, match="malformed zip archive: Bad magic number"):
        load_pth(str(CRASHES / "pth_bad_local_header.pth"))


def test_pth_with_a_compressed_pickle_is_refused(tmp_path):
    # A deflated pickle could expand a thousandfold; torch.save never compresses it.
    import zipfile
    from pyllama.convert.pth_reader import load_pth
    src = CRASHES.parent / "corpus" / "pth" / "state_dict.pth"
    out = tmp_path / "deflated.pth"
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(out, "w") as zout:
        for info in zin.infolist():
            kind = zipfile.ZIP_DEFLATED if info.filename.endswith("data.pkl") else zipfile.ZIP_STORED
            zout.writestr(info.filename, zin.read(info), compress_type=kind)
    with pytest.raises(pyllama.PyllamaError, match="data.pkl is compressed"):
        load_pth(str(out))
