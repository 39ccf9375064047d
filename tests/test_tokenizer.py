"""pyllama.tokenizer against llama.cpp: token ids, detokenized text, token pieces and
end-of-generation sets recorded from llama.cpp by tools/make_tokenizer_golden.py
(tests/data/tokenizer_golden/*.json), plus streaming, tokenizer.model and error handling."""
from __future__ import annotations

import copy
import functools
import hashlib
import importlib.util
import json
import random
import re
import struct
from pathlib import Path

import gguf
import numpy as np
import pytest

from pyllama._core import PyllamaError
from pyllama.tokenizer import Tokenizer

DATA = Path(__file__).parent / "data"
GOLDEN = DATA / "tokenizer_golden"
GOLDEN_NAMES = sorted(p.stem for p in GOLDEN.glob("*.json"))
MISTRAL_MODEL = DATA / "mistral-tokenizer.model.v1"  # tiny-llama's vocabulary as tokenizer.model


def _golden_tool():
    # Only for its text lists and hash; the tool imports llama_cpp lazily, and is not run here.
    spec = importlib.util.spec_from_file_location(
        "make_tokenizer_golden", Path(__file__).parents[1] / "tools" / "make_tokenizer_golden.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


TOOL = _golden_tool()


def gguf_metadata(path: Path) -> dict:
    """A GGUF's metadata in pyllama._core.GGUFFile's convention (see Tokenizer.from_metadata)."""
    reader = gguf.GGUFReader(path)
    md = {}
    for key, field in reader.fields.items():
        if key.startswith("GGUF."):
            continue
        vtype = field.types[0]
        if vtype == gguf.GGUFValueType.ARRAY:
            if field.types[-1] == gguf.GGUFValueType.STRING:
                md[key] = [bytes(field.parts[i]).decode() for i in field.data]
            else:
                md[key] = np.concatenate([field.parts[i] for i in field.data])
        elif vtype == gguf.GGUFValueType.STRING:
            md[key] = bytes(field.parts[field.data[0]]).decode()
        else:
            value = field.parts[field.data[0]][0]
            md[key] = bool(value) if vtype == gguf.GGUFValueType.BOOL else value.item()
    return md


@pytest.fixture(scope="session")
def base_metadata(demo_model, golden_dir):
    paths = {"demo": demo_model, "tiny-llama": golden_dir / "tiny-llama-256.F16.gguf"}
    return functools.lru_cache(maxsize=None)(lambda name: gguf_metadata(paths[name]))


def apply_changes(md: dict, changes: dict | None) -> dict:
    """The metadata of a golden variant (see VARIANTS in the golden tool)."""
    md = dict(md)
    if not changes:
        return md
    md.update(changes.get("set", {}))
    for key in changes.get("remove", []):
        del md[key]
    tokens = md["tokenizer.ggml.tokens"]
    if changes.get("rename"):
        md["tokenizer.ggml.tokens"] = [changes["rename"].get(t, t) for t in tokens]
    if changes.get("token_types"):
        types = md["tokenizer.ggml.token_type"].copy()
        for text, new_type in changes["token_types"].items():
            types[tokens.index(text)] = new_type
        md["tokenizer.ggml.token_type"] = types
    return md


@pytest.fixture(scope="session")
def golden_tokenizer(base_metadata):
    @functools.lru_cache(maxsize=None)
    def get(name: str) -> tuple[Tokenizer, dict]:
        golden = json.loads((GOLDEN / f"{name}.json").read_text())
        md = apply_changes(base_metadata(golden["base"]), golden["metadata_changes"])
        return Tokenizer.from_metadata(md), golden
    return get


@pytest.fixture(scope="session")
def metadata_of(base_metadata):
    """A fresh, freely mutable copy of a golden vocabulary's metadata."""
    def get(name: str) -> dict:
        golden = json.loads((GOLDEN / f"{name}.json").read_text())
        return copy.deepcopy(apply_changes(base_metadata(golden["base"]), golden["metadata_changes"]))
    return get


# ------------------------------------------------------------------------------------------
# Agreement with llama.cpp

def test_golden_files_cover_both_kinds_and_required_pre_tokenizers():
    assert {"smollm", "tiny-llama-spm", "llama-bpe"} <= set(GOLDEN_NAMES)


@pytest.mark.parametrize("name", GOLDEN_NAMES)
def test_vocabulary_facts_match_llama_cpp(golden_tokenizer, name):
    tok, golden = golden_tokenizer(name)
    assert tok.n_vocab == golden["n_vocab"]
    assert tok.bos_id == golden["bos_id"]
    assert tok.eos_id == golden["eos_id"]
    assert tok.add_bos == golden["add_bos"]
    assert tok.add_eos == golden["add_eos"]
    assert isinstance(tok.eog_ids, frozenset)
    assert sorted(tok.eog_ids) == golden["eog_ids"]


@pytest.mark.parametrize("name", GOLDEN_NAMES)
def test_token_ids_match_llama_cpp(golden_tokenizer, name):
    tok, golden = golden_tokenizer(name)
    assert [c["text"] for c in golden["cases"]] == TOOL.TEXTS
    for case in golden["cases"]:
        for mode, expected in case["ids"].items():
            # llama.cpp's add_special adds BOS/EOS as the vocabulary says: our None.
            add = None if mode.startswith("bos") else False
            got = tok.encode(case["text"], add_bos=add, add_eos=add, special="special" in mode)
            assert got == expected, (mode, case["text"])


@pytest.mark.parametrize("name", GOLDEN_NAMES)
def test_decoded_text_matches_llama_cpp(golden_tokenizer, name):
    tok, golden = golden_tokenizer(name)
    for case in golden["cases"]:
        ids = next(iter(case["ids"].values()))
        assert tok.decode(ids) == case["decoded"]["plain"], case["text"]
        assert tok.decode(ids, special=True) == case["decoded"]["special"], case["text"]
        if "plain_ids" in case["decoded"]:
            assert tok.decode(case["ids"]["plain"]) == case["decoded"]["plain_ids"], case["text"]


@pytest.mark.parametrize("name", GOLDEN_NAMES)
def test_every_token_piece_matches_llama_cpp(golden_tokenizer, name):
    tok, golden = golden_tokenizer(name)
    for special, key in ((False, "plain"), (True, "special")):
        h = hashlib.sha256()
        for i in range(tok.n_vocab):
            piece = tok.token_bytes(i, special=special)
            h.update(struct.pack("<I", len(piece)) + piece)
        assert h.hexdigest() == golden["pieces_sha256"][key], key


@pytest.mark.parametrize("name", [n for n in GOLDEN_NAMES
                                  if "sweep_sha256" in json.loads((GOLDEN / f"{n}.json").read_text())])
def test_every_code_point_splits_as_in_llama_cpp(golden_tokenizer, name):
    """Pre-tokenizer regexes vs llama.cpp's Unicode tables, over planes 0-3 and 14."""
    tok, golden = golden_tokenizer(name)
    ids = (tok.encode(text, add_bos=False) for text in TOOL.sweep_texts())
    assert TOOL.ids_sha256(ids) == golden["sweep_sha256"]


def test_add_bos_and_add_eos_override_the_vocabulary(golden_tokenizer):
    bpe, _ = golden_tokenizer("smollm")  # add_bos_token is false in the file
    assert not bpe.add_bos
    plain = bpe.encode("Hello world")
    assert bpe.encode("Hello world", add_bos=True) == [bpe.bos_id] + plain
    assert bpe.encode("Hello world", add_eos=True) == plain + [bpe.eos_id]
    spm, _ = golden_tokenizer("tiny-llama-spm")  # adds BOS by default
    assert spm.encode("Hello")[0] == spm.bos_id
    assert spm.encode("Hello", add_bos=False) == spm.encode("Hello")[1:]
    assert spm.encode("", add_bos=True) == [spm.bos_id]


def test_add_eos_token_from_metadata(metadata_of):
    md = metadata_of("tiny-llama-spm")
    md["tokenizer.ggml.add_eos_token"] = True
    tok = Tokenizer.from_metadata(md)
    assert tok.add_eos
    assert tok.encode("Hi")[-1] == tok.eos_id
    assert tok.encode("Hi", add_eos=False)[-1] != tok.eos_id


# ------------------------------------------------------------------------------------------
# tokenizer.model

def test_tokenizer_model_file_gives_the_same_ids(golden_tokenizer, metadata_of):
    assert MISTRAL_MODEL.stat().st_size < 1 << 20
    from_metadata, golden = golden_tokenizer("tiny-llama-spm")
    from_file = Tokenizer.from_metadata(metadata_of("tiny-llama-spm"), tokenizer_model=MISTRAL_MODEL)
    for case in golden["cases"]:
        for special in (False, True):
            assert from_file.encode(case["text"], special=special) == \
                from_metadata.encode(case["text"], special=special), case["text"]
    texts = TOOL.sweep_texts()
    assert TOOL.ids_sha256(from_file.encode(t, add_bos=False) for t in texts) == golden["sweep_sha256"]


def test_tokenizer_model_must_match_the_vocabulary(metadata_of):
    md = metadata_of("tiny-llama-spm")
    md["tokenizer.ggml.tokens"][1000] = "something else"
    with pytest.raises(PyllamaError, match="piece 1000"):
        Tokenizer.from_metadata(md, tokenizer_model=MISTRAL_MODEL)
    with pytest.raises(ValueError, match="SentencePiece"):
        Tokenizer.from_metadata(metadata_of("smollm"), tokenizer_model=MISTRAL_MODEL)


def test_tokenizer_model_must_be_a_whole_bpe_model(tmp_path, metadata_of):
    unigram = tmp_path / "unigram.model"
    unigram.write_bytes(b"\x12\x02\x18\x01")  # trainer_spec { model_type: UNIGRAM }
    truncated = tmp_path / "truncated.model"
    truncated.write_bytes(MISTRAL_MODEL.read_bytes()[:100_000])
    for path in (unigram, truncated):
        with pytest.raises(PyllamaError, match=path.name):
            Tokenizer.from_metadata(metadata_of("tiny-llama-spm"), tokenizer_model=path)
    with pytest.raises(FileNotFoundError):
        Tokenizer.from_metadata(metadata_of("tiny-llama-spm"), tokenizer_model=tmp_path / "none.model")


# ------------------------------------------------------------------------------------------
# Streaming

STREAM_TEXTS = ["日本語のテキストです。東京は日本の首都です。", "👨‍👩‍👧‍👦 family, 👩🏽‍💻 coder 🇯🇵 🏳️‍🌈",
                "Hello , world ! he said ' no ' and he 's here , isn 't he ?", TOOL.LONG]


@pytest.mark.parametrize("name", ["smollm", "tiny-llama-spm", "llama-bpe"])
@pytest.mark.parametrize("special", [False, True])
def test_streaming_equals_whole_decode_without_partial_characters(golden_tokenizer, name, special):
    tok, _ = golden_tokenizer(name)
    split_chars = 0
    for text in STREAM_TEXTS:
        ids = tok.encode("<|im_start|>" + text, special=True)
        stream = tok.stream(special=special)
        chunks = [stream.push(i) for i in ids]
        chunks.append(stream.flush())
        assert "".join(chunks) == tok.decode(ids, special=special)
        assert all("\ufffd" not in c for c in chunks)
        # The texts must make tokens end inside characters, or this test proves nothing.
        split_chars += sum(not _is_utf8(tok.token_bytes(i)) for i in ids)
    assert split_chars > 0


def _is_utf8(data: bytes) -> bool:
    try:
        data.decode()
        return True
    except UnicodeDecodeError:
        return False


def test_sentencepiece_streams_byte_fallback_tokens(golden_tokenizer):
    tok, _ = golden_tokenizer("tiny-llama-spm")
    ids = tok.encode("🗼", add_bos=False)  # not in the vocabulary: spelled as <0xF0><0x9F>...
    assert [tok.token_bytes(i) for i in ids[-4:]] == [bytes([b]) for b in "🗼".encode()]
    stream = tok.stream()
    assert [stream.push(i) for i in ids] == [""] * (len(ids) - 1) + ["🗼"]
    assert stream.flush() == ""


def test_flush_ends_the_sequence(golden_tokenizer):
    tok, _ = golden_tokenizer("tiny-llama-spm")
    hello, = tok.encode("Hello", add_bos=False)
    first_byte = tok.encode("🗼", add_bos=False)[-4]
    stream = tok.stream()
    assert stream.push(hello) == "Hello"  # the prefix space of the first token is dropped
    assert stream.push(first_byte) == ""
    assert stream.flush() == "\ufffd"     # an unfinished character
    assert stream.push(hello) == "Hello"  # a new sequence: first token again


def test_stream_holds_spaces_that_clean_up_may_remove(golden_tokenizer):
    tok, _ = golden_tokenizer("llama-bpe")  # Llama 3 kind: decode cleans " ," into ","
    ids = tok.encode("a , b", add_bos=False)
    stream = tok.stream()
    out = [stream.push(i) for i in ids]
    assert "".join(out) + stream.flush() == tok.decode(ids) == "a, b"
    assert out[:2] == ["a", ""]  # the space after "a" waits to see the comma
    ids = tok.encode("I am a cat, she is here", add_bos=False)
    stream = tok.stream()
    out = [stream.push(i) for i in ids]
    assert all(out)  # short words still flow: only bytes a pattern could use wait
    assert "".join(out) + stream.flush() == tok.decode(ids)


def test_cleaning_in_settled_parts_equals_cleaning_whole():
    """The streaming cut rule, on random byte strings dense in clean-up patterns."""
    from pyllama._detok import clean_spaces, settled_length
    rng = random.Random(1234)
    alphabet = [b" ", b"'", b".", b",", b"?", b"s", b"m", b"r", b"e", b"v", b"x", b"\xc3\xa9"]
    for _ in range(3000):
        pieces = [b"".join(rng.choice(alphabet) for _ in range(rng.randint(0, 4)))
                  for _ in range(rng.randint(1, 12))]
        out, held = b"", b""
        for piece in pieces:
            held += piece
            cut = settled_length(held)
            out, held = out + clean_spaces(held[:cut]), held[cut:]
        assert out + clean_spaces(held) == clean_spaces(b"".join(pieces)), pieces


# ------------------------------------------------------------------------------------------
# Bad input

@pytest.mark.parametrize("bad", [-1, 49152, 10**20, "5", 1.0, None, True])
def test_bad_token_ids_raise_value_error_naming_them(golden_tokenizer, bad):
    tok, _ = golden_tokenizer("smollm")
    for call in (lambda: tok.decode([5, bad]), lambda: tok.token_bytes(bad),
                 lambda: tok.stream().push(bad)):
        with pytest.raises(ValueError, match=re.escape(f"token id {bad!r}")):
            call()


def test_numpy_integer_ids_are_accepted(golden_tokenizer):
    tok, _ = golden_tokenizer("smollm")
    ids = tok.encode("Hello world")
    assert tok.decode(np.array(ids, dtype=np.int32)) == "Hello world"


def test_text_must_be_a_string(golden_tokenizer):
    tok, _ = golden_tokenizer("smollm")
    with pytest.raises(TypeError):
        tok.encode(b"bytes")
    with pytest.raises(ValueError):
        tok.encode("lone surrogate \ud800")


def test_from_gguf_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError):
        Tokenizer.from_gguf(tmp_path / "missing.gguf")


def _set(key, value):
    return lambda md: md.__setitem__(key, value)


def _set_item(key, index, value):
    def change(md):
        md[key][index] = value
    return change


# (base vocabulary, change, key the error must name)
MALFORMED = {
    "model missing": ("smollm", lambda md: md.pop("tokenizer.ggml.model"), "tokenizer.ggml.model"),
    "model unknown": ("smollm", _set("tokenizer.ggml.model", "bert"), "tokenizer.ggml.model"),
    "model not a string": ("smollm", _set("tokenizer.ggml.model", 3), "tokenizer.ggml.model"),
    "pre unknown": ("smollm", _set("tokenizer.ggml.pre", "no-such-pre"), "no-such-pre"),
    "tokens missing": ("tiny-llama-spm", lambda md: md.pop("tokenizer.ggml.tokens"), "tokenizer.ggml.tokens"),
    "tokens empty": ("tiny-llama-spm", _set("tokenizer.ggml.tokens", []), "tokenizer.ggml.tokens"),
    "tokens not strings": ("smollm", _set_item("tokenizer.ggml.tokens", 7, b"bytes"), r"tokenizer.ggml.tokens\[7\]"),
    "tokens repeated": ("smollm", _set_item("tokenizer.ggml.tokens", 300, "<|im_end|>"), "tokenizer.ggml.tokens"),
    "tokens not a list": ("smollm", _set("tokenizer.ggml.tokens", "abc"), "tokenizer.ggml.tokens"),
    "scores too short": ("tiny-llama-spm", lambda md: md.__setitem__(
        "tokenizer.ggml.scores", md["tokenizer.ggml.scores"][:-1]), "tokenizer.ggml.scores"),
    "scores not numbers": ("tiny-llama-spm", _set("tokenizer.ggml.scores", ["x"] * 32000), "tokenizer.ggml.scores"),
    "types too long": ("smollm", lambda md: md.__setitem__(
        "tokenizer.ggml.token_type", np.ones(49153, np.int32)), "tokenizer.ggml.token_type"),
    "types not integers": ("smollm", lambda md: md.__setitem__(
        "tokenizer.ggml.token_type", np.ones(49152, np.float32)), "tokenizer.ggml.token_type"),
    "type unknown": ("smollm", _set_item("tokenizer.ggml.token_type", 40, 9), r"tokenizer.ggml.token_type\[40\]"),
    "byte token malformed": ("tiny-llama-spm", _set_item("tokenizer.ggml.tokens", 3 + 0x41, "<0xZZ>"),
                             r"tokenizer.ggml.tokens\[68\]"),
    "byte type on a word": ("smollm", _set_item("tokenizer.ggml.token_type", 500, 6), r"tokenizer.ggml.tokens\[500\]"),
    "merges missing": ("smollm", lambda md: md.pop("tokenizer.ggml.merges"), "tokenizer.ggml.merges"),
    "merge without space": ("smollm", _set_item("tokenizer.ggml.merges", 10, "abc"), r"tokenizer.ggml.merges\[10\]"),
    "merge of non-tokens": ("smollm", _set_item("tokenizer.ggml.merges", 11, "qqqqq zzzzz"),
                            r"tokenizer.ggml.merges\[11\]"),
    "bos out of range": ("smollm", _set("tokenizer.ggml.bos_token_id", 49152), "tokenizer.ggml.bos_token_id"),
    "eos out of range": ("tiny-llama-spm", _set("tokenizer.ggml.eos_token_id", 32000), "tokenizer.ggml.eos_token_id"),
    "bos not an integer": ("smollm", _set("tokenizer.ggml.bos_token_id", "1"), "tokenizer.ggml.bos_token_id"),
    "add_bos not a bool": ("smollm", _set("tokenizer.ggml.add_bos_token", 1), "tokenizer.ggml.add_bos_token"),
    "add_space_prefix not a bool": ("tiny-llama-spm", _set("tokenizer.ggml.add_space_prefix", "yes"),
                                    "tokenizer.ggml.add_space_prefix"),
}


@pytest.mark.parametrize("case", MALFORMED, ids=list(MALFORMED))
def test_malformed_vocabulary_raises_pyllama_error_naming_the_key(metadata_of, case):
    base, change, key = MALFORMED[case]
    md = metadata_of(base)
    change(md)
    with pytest.raises(PyllamaError, match=key):
        Tokenizer.from_metadata(md)


def test_sentencepiece_without_a_needed_byte_token_cannot_encode_it(metadata_of, golden_tokenizer):
    md = metadata_of("tiny-llama-spm")
    md["tokenizer.ggml.tokens"][3 + 0xBC] = "byte BC"  # was <0xBC>, the last byte of "🗼"
    md["tokenizer.ggml.token_type"][3 + 0xBC] = 1
    tok = Tokenizer.from_metadata(md)
    assert tok.encode("fine ok") == golden_tokenizer("tiny-llama-spm")[0].encode("fine ok")
    with pytest.raises(PyllamaError, match="0xBC"):
        tok.encode("a 🗼")


def test_out_of_range_optional_ids_are_ignored_as_llama_cpp_does(metadata_of):
    md = metadata_of("tiny-llama-spm")
    md["tokenizer.ggml.padding_token_id"] = 32000  # seen in real Llama 2 conversions
    md["tokenizer.ggml.eot_token_id"] = 99999
    assert Tokenizer.from_metadata(md).eog_ids == {2}
