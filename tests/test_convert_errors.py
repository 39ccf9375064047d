"""pyllama.convert on bad input: clear errors naming the file and the problem, a hostile pickle
that cannot run code, and a destination that is never left half-written."""
from __future__ import annotations

import errno
import io
import json
import os
import pickle
import zipfile

import pytest
import torch

import pyllama
from pyllama.convert import converter
from pyllama.convert.pth_reader import load_pth
from checkpoints import TinyConfig, random_weights, write_hf, write_meta

CFG = TinyConfig(n_layer=1, seed=20)


@pytest.fixture
def hf(tmp_path):
    return write_hf(tmp_path / "hf", CFG, random_weights(CFG))


@pytest.fixture
def meta(tmp_path):
    return write_meta(tmp_path / "meta", CFG, random_weights(CFG), n_shards=2)


def convert(src, dst, **kw):
    return pyllama.convert(src, dst, type="F16", progress=False, **kw)


# --- source folders -------------------------------------------------------------------------------
def test_missing_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        convert(tmp_path / "nowhere", tmp_path / "o.gguf")


def test_folder_of_neither_format(tmp_path):
    (tmp_path / "stuff").mkdir()
    (tmp_path / "stuff" / "notes.txt").write_text("hello")
    with pytest.raises(pyllama.PyllamaError, match="neither a Hugging Face checkpoint .* nor a Meta one"):
        convert(tmp_path / "stuff", tmp_path / "o.gguf")


def test_meta_without_params_json(tmp_path, meta):
    (meta / "params.json").unlink()
    with pytest.raises(FileNotFoundError, match="without params.json"):
        convert(meta, tmp_path / "o.gguf")


def test_meta_without_tokenizer(tmp_path, meta):
    (meta / "tokenizer.model").unlink()
    with pytest.raises(FileNotFoundError, match="no tokenizer.model"):
        convert(meta, tmp_path / "o.gguf")


def test_meta_shards_that_disagree_in_shape(tmp_path, meta):
    shard = torch.load(meta / "consolidated.01.pth")
    shard["layers.0.attention.wk.weight"] = shard["layers.0.attention.wk.weight"][:, :-8].clone()
    torch.save(shard, meta / "consolidated.01.pth")
    with pytest.raises(pyllama.PyllamaError, match=r"layers\.0\.attention\.wk\.weight.*shards disagree in shape.*"
                                                  r"consolidated\.01\.pth"):
        convert(meta, tmp_path / "o.gguf")


def test_meta_shard_numbers_with_a_gap(tmp_path, meta):
    (meta / "consolidated.01.pth").rename(meta / "consolidated.02.pth")
    with pytest.raises(pyllama.PyllamaError, match=r"consolidated\.00\.pth \.\. consolidated\.01\.pth"):
        convert(meta, tmp_path / "o.gguf")


def test_unknown_architecture(tmp_path, hf):
    config = json.loads((hf / "config.json").read_text())
    config["architectures"] = ["GPT2LMHeadModel"]
    (hf / "config.json").write_text(json.dumps(config))
    with pytest.raises(pyllama.PyllamaError, match=r"config\.json: architecture 'GPT2LMHeadModel' is not supported"):
        convert(hf, tmp_path / "o.gguf")


def test_hf_without_tokenizer(tmp_path, hf):
    (hf / "tokenizer.model").unlink()
    with pytest.raises(FileNotFoundError, match="no tokenizer.model or tokenizer.json"):
        convert(hf, tmp_path / "o.gguf")


def test_tiktoken_tokenizer_model_is_refused(tmp_path, hf):
    (hf / "tokenizer.model").write_text("IQ== 0\nIg== 1\n")  # what Llama 3's tokenizer.model looks like
    with pytest.raises(pyllama.PyllamaError, match="tokenizer.model: not a SentencePiece model"):
        convert(hf, tmp_path / "o.gguf")


def test_index_that_lists_a_missing_tensor(tmp_path):
    src = write_hf(tmp_path / "hf", CFG, random_weights(CFG), layout="sharded")
    index = json.loads((src / "model.safetensors.index.json").read_text())
    index["weight_map"]["model.layers.0.extra.weight"] = "model-00001-of-00002.safetensors"
    (src / "model.safetensors.index.json").write_text(json.dumps(index))
    with pytest.raises(pyllama.PyllamaError, match=r"index\.json: the weight files do not hold.*extra\.weight"):
        convert(src, tmp_path / "o.gguf")


def test_tensor_with_the_wrong_shape_for_the_config(tmp_path, hf):
    config = json.loads((hf / "config.json").read_text())
    config["intermediate_size"] = 128
    (hf / "config.json").write_text(json.dumps(config))
    with pytest.raises(pyllama.PyllamaError, match=r"model\.safetensors: model\.layers\.0\.mlp\.\w+_proj\.weight: shape"):
        convert(hf, tmp_path / "o.gguf")


def test_truncated_safetensors(tmp_path, hf):
    path = hf / "model.safetensors"
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(pyllama.PyllamaError, match=r"model\.safetensors: not a valid safetensors file"):
        convert(hf, tmp_path / "o.gguf")


# --- PyTorch checkpoints: the restricted unpickler ------------------------------------------------------
def _zip_checkpoint(path, pickle_bytes: bytes, storages=None) -> None:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr("archive/data.pkl", pickle_bytes)
        zf.writestr("archive/byteorder", "little")
        for key, data in (storages or {}).items():
            zf.writestr(f"archive/data/{key}", data)


def _hostile_pickle(module: str, name: str, marker) -> bytes:
    """A pickle that calls module.name to create the file `marker`:
    PROTO 2; GLOBAL module name; BINUNICODE argument; TUPLE1; REDUCE (the call); STOP."""
    arg = f"open({str(marker)!r}, 'w').close()" if name == "exec" else f"touch '{marker}'"
    return (b"\x80\x02c" + f"{module}\n{name}\n".encode() + b"X" + len(arg.encode()).to_bytes(4, "little")
            + arg.encode() + b"\x85R.")


@pytest.mark.parametrize("module,name", [("os", "system"), ("subprocess", "getoutput"), ("builtins", "exec")])
def test_hostile_pickle_names_the_global_and_runs_nothing(tmp_path, module, name):
    control = tmp_path / "control"
    pickle.loads(_hostile_pickle(module, name, control))  # the payload works with a plain unpickler
    assert control.exists()
    marker = tmp_path / "pwned"
    path = tmp_path / "pytorch_model.bin"
    _zip_checkpoint(path, _hostile_pickle(module, name, marker))
    with pytest.raises(pyllama.PyllamaError, match=rf"pytorch_model\.bin: .*refers to {module}\.{name}"):
        load_pth(str(path))
    assert not marker.exists()


def test_hostile_pickle_through_convert(tmp_path, hf):
    (hf / "model.safetensors").unlink()
    stack_global = b"\x80\x04\x8c\x08builtins\x94\x8c\x04eval\x94\x93\x94\x8c\x061+1==2\x94\x85\x94R\x94."
    _zip_checkpoint(hf / "pytorch_model.bin", stack_global)
    with pytest.raises(pyllama.PyllamaError, match=r"pytorch_model\.bin: .*refers to builtins\.eval.*could run code"):
        convert(hf, tmp_path / "o.gguf")


def _saved(tmp_path, state) -> bytes:
    buf = io.BytesIO()
    torch.save(state, buf)
    return buf.getvalue()


def _rewritten(data: bytes, edit) -> bytes:
    """A torch.save archive with each member's bytes passed through edit(name, bytes)."""
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as src, zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as dst:
        for info in src.infolist():
            dst.writestr(info.filename, edit(info.filename, src.read(info)))
    return out.getvalue()


def test_pth_storage_smaller_than_the_pickle_says(tmp_path):
    data = _saved(tmp_path, {"w": torch.zeros(5, 3)})
    path = tmp_path / "short.pth"
    path.write_bytes(_rewritten(data, lambda n, b: b[:-8] if "/data/" in n else b))
    with pytest.raises(pyllama.PyllamaError, match=r"short\.pth: storage .* holds 52 bytes, but the pickle says 15"):
        load_pth(str(path))


def test_pth_tensor_larger_than_its_storage(tmp_path):
    data = _saved(tmp_path, {"w": torch.zeros(5, 3)})
    size_5x3 = b"K\x05K\x03\x86"
    assert data.count(size_5x3) == 1
    path = tmp_path / "big.pth"
    path.write_bytes(_rewritten(data, lambda n, b: b.replace(size_5x3, b"K\x06K\x03\x86") if n.endswith(".pkl") else b))
    with pytest.raises(pyllama.PyllamaError, match=r"big\.pth: storage 0: shape \(6, 3\).* needs more than the 15"):
        load_pth(str(path))


def test_legacy_torch_format_is_refused(tmp_path):
    path = tmp_path / "old.pth"
    torch.save({"w": torch.zeros(2)}, path, _use_new_zipfile_serialization=False)
    with pytest.raises(pyllama.PyllamaError, match=r"old\.pth: .*legacy pre-1\.6 format"):
        load_pth(str(path))


def test_pth_reader_reads_strided_and_offset_tensors(tmp_path):
    base = torch.arange(40, dtype=torch.float32).reshape(5, 8)
    state = {"t": base.t(), "view": base[1:, 2:6], "half": base.to(torch.float16)[2:], "bf": base.to(torch.bfloat16),
             "t_bf": base.to(torch.bfloat16).t()}
    path = tmp_path / "views.pth"
    torch.save(state, path)
    raw, tensors = load_pth(str(path))
    try:
        for name, t in state.items():
            got = tensors[name].rows(0, t.shape[0])
            assert got.dtype.name == "float32" and (got == t.float().numpy()).all(), name
            for start, stop in ((1, 3), (3, t.shape[0]), (0, 2)):  # transposed ones are read once, cut
                assert (tensors[name].rows(start, stop) == t.float().numpy()[start:stop]).all(), name
    finally:
        raw.close()


# --- the destination --------------------------------------------------------------------------------
def test_existing_destination_needs_force(tmp_path, hf):
    dst = tmp_path / "o.gguf"
    dst.write_bytes(b"keep me")
    with pytest.raises(FileExistsError, match="o.gguf"):
        convert(hf, dst)
    assert dst.read_bytes() == b"keep me"
    convert(hf, dst, force=True)
    assert dst.read_bytes()[:4] == b"GGUF"


class _FullDisk(io.RawIOBase):
    """A file on a disk that fills up after `room` bytes."""

    def __init__(self, real, room: int) -> None:
        self.real, self.room = real, room

    def write(self, data) -> int:
        n = min(len(memoryview(data).cast("B")), self.room)
        if n == 0:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self.room -= n
        return self.real.write(memoryview(data).cast("B")[:n])

    def close(self) -> None:
        self.real.close()
        super().close()


def test_write_failure_leaves_no_file(tmp_path, hf, monkeypatch):
    """A full disk: an OSError naming the destination, which does not appear, and no leftovers."""
    monkeypatch.setattr(converter, "open", lambda *a, **k: _FullDisk(open(*a, **k), 1 << 20), raising=False)
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(OSError, match=r"cannot write .*o\.gguf: No space left on device") as info:
        convert(hf, out / "o.gguf")
    assert info.value.errno == errno.ENOSPC
    assert os.listdir(out) == []


def test_destination_gets_ordinary_permissions(tmp_path, hf):
    umask = os.umask(0o022)
    os.umask(umask)
    convert(hf, tmp_path / "o.gguf")
    assert os.stat(tmp_path / "o.gguf").st_mode & 0o777 == 0o666 & ~umask


def test_destination_folder_must_exist(tmp_path, hf):
    with pytest.raises(FileNotFoundError, match="missing"):
        convert(hf, tmp_path / "missing" / "o.gguf")


def test_bad_arguments(tmp_path, hf):
    with pytest.raises(ValueError, match="n_threads"):
        pyllama.convert(hf, tmp_path / "o.gguf", type="F16", n_threads=0, progress=False)
    with pytest.raises(ValueError, match="type must be"):
        pyllama.convert(hf, tmp_path / "o.gguf", type="F16; rm", progress=False)
    with pytest.raises(ValueError, match="one of the checkpoint's own files"):
        pyllama.convert(hf, hf / "model.safetensors", type="F16", force=True, progress=False)
