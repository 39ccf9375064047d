"""What the Python-side fuzz targets do with one input file, shared by the atheris targets in
this folder and by the CI regression test (tests/test_fuzz_corpus.py) that runs every corpus file
and crash reproducer through them.

Each check reads the file through pyllama's public API and returns normally when the file was
read or refused cleanly (ValueError, which PyllamaError is); any other exception, a crash or a
hang is a bug. What a file yields is used too (every tensor's first rows, a tokenizer's encode
and decode), so a reader that accepts what it cannot back fails here rather than later.
"""
from __future__ import annotations

import os
import sys
from typing import Any, Mapping

from pyllama import Model, _core
from pyllama.convert.pth_reader import load_pth
from pyllama.convert.safetensors_reader import load_safetensors
from pyllama.tokenizer import Tokenizer

# Text with spaces, digits, accents, an emoji, control-token spellings of both vocabulary kinds.
SAMPLE_TEXT = " Hello  world 123 é \u2603 \U0001F600 <s></s><|im_start|>x\n\t"


def check_gguf(path: str) -> None:
    """The GGUF parser, then the model loader and the tokenizer on what it read."""
    try:
        f = _core.GGUFFile(path)
        metadata = f.metadata  # refuses keys and strings that are not UTF-8
    except ValueError:
        return
    for t in f.tensors:
        (t.name, t.shape, t.type_name, t.nbytes)
    try:
        _core.LlamaModel(f)
        model_ok = True
    except ValueError:
        model_ok = False
    if check_tokenizer(metadata) and model_ok and os.path.getsize(path) < 1 << 20:
        check_model(path)


def check_tokenizer(metadata: Mapping[str, Any]) -> bool:
    """Tokenizer.from_metadata, then encode and decode; True if the vocabulary loaded."""
    try:
        tok = Tokenizer.from_metadata(metadata)
    except ValueError:
        return False
    ids = []
    for special in (False, True):
        try:
            ids = tok.encode(SAMPLE_TEXT, special=special)
        except ValueError:  # a vocabulary that cannot spell the text (no byte tokens) says so
            pass
    for special in (False, True):
        tok.decode(ids, special=special)
        tok.decode(range(min(tok.n_vocab, 300)), special=special)
    stream = tok.stream()
    for i in ids:
        stream.push(i)
    stream.flush()
    return True


def check_model(path: str) -> None:
    """A whole Model on a file whose weights and vocabulary both load: one forward pass."""
    try:
        model = Model(path, n_ctx=8, n_threads=1)
    except ValueError:
        return
    with model:
        model.logits([0, model.n_vocab - 1])


def check_pth(path: str) -> None:
    _check_checkpoint(load_pth, path)


def check_safetensors(path: str) -> None:
    _check_checkpoint(load_safetensors, path)


def _check_checkpoint(load, path: str) -> None:
    try:
        raw, tensors = load(path)
    except ValueError:
        return
    try:
        for t in tensors.values():
            try:
                t.rows(0, min(t.n_rows, 2))
            except ValueError:
                pass
    finally:
        raw.close()


CHECKS = {"gguf": check_gguf, "loader": check_gguf, "tokenizer": check_gguf,
          "pth": check_pth, "safetensors": check_safetensors}


def fuzz_main(check) -> None:
    """An atheris target: each input is written to a file and given to `check`."""
    import atexit
    import tempfile

    import atheris

    fd, path = tempfile.mkstemp(prefix="pyllama-fuzz-", dir="/dev/shm" if os.path.isdir("/dev/shm") else None)
    os.close(fd)
    atexit.register(os.unlink, path)

    def one_input(data: bytes) -> None:
        with open(path, "wb") as f:
            f.write(data)
        check(path)

    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()
