#!/usr/bin/env python3
"""Write tests/data/tokenizer_golden/*.json: llama.cpp's token ids and detokenized text for a
fixed list of texts, for the vocabularies pyllama's tokenizer must reproduce.

A developer tool: it imports llama_cpp (llama-cpp-python), so it runs with the Python that has
it, never in tests or CI:

    PYTHON_WITH_LLAMA_CPP tools/make_tokenizer_golden.py [--demo GGUF] [--tiny-llama GGUF]

Vocabularies: the demo model (SmolLM2, byte-level BPE "smollm"), the golden tiny-llama-256.F16.gguf
(SentencePiece), and variants of them with some metadata changed. A variant is written as a
vocab-only GGUF to a temporary folder by a Python that has the gguf package (--gguf-python); its
JSON records the change so that tests rebuild the same vocabulary from the base's metadata.

For some vocabularies it also hashes llama.cpp's ids for strings that put every code point of
planes 0-3 and 14 between letters, digits, spaces and punctuation ("sweep_sha256"): the regex
engine behind pyllama's pre-tokenizer and llama.cpp's Unicode tables must agree on all of them.
"""
from __future__ import annotations

import argparse
import ctypes
import hashlib
import json
import os
import struct
import subprocess
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "tests" / "data" / "tokenizer_golden"

LONG = (
    "The quick brown fox jumps over the lazy dog. In 1889, the Eiffel Tower was completed in "
    "Paris; it stood 300 metres (984 ft) tall and was, for 41 years, the tallest man-made "
    "structure in the world. Engineers didn't believe it'd last -- yet it's still there, and "
    "we've all seen photos of it. \"Why?\" you ask. Because it's iron: 7,300 tonnes of it, "
    "held together by 2.5 million rivets!\n\nToday, roughly 7 million people visit each year. "
    "Tickets cost €29.40 for adults; children under 4 go free. The summit is at 276 m, reached "
    "by lifts that travel 103,000 km a year -- more than twice around the Earth. Some visitors "
    "say it's 'breathtaking', others think it's overrated; either way, it's iconic.\n\t- Paris, "
    "France (48.8584° N, 2.2945° E)\n\t- Built for the Exposition Universelle\n\nVisit at night "
    "when 20,000 bulbs sparkle for five minutes every hour. C'est magnifique! 東京タワー was "
    "modelled on it in 1958. 🗼✨"
)

TEXTS = [
    "", " ", "  ", "Hello world", " Hello world", "Hello world ", "Hello  world   ",
    "   leading spaces", "trailing spaces   ", "line one\nline two\n\nline four", "\n", "\n\n\n",
    "\t tab\tseparated\t\t", "\r\n windows \r\n", "1234567890", "3.14159 and 42,000 or ٣٤٥",
    "x=1+2*3-4/5; y = x ** 2",
    'def add(a, b):\n    return a + b\n\nif __name__ == "__main__":\n    print(add(1, 2))\n',
    "for (int i = 0; i < n; ++i) { sum += a[i]; } // done",
    "日本語のテキストです。東京は日本の首都です。", "我们今天去公园散步，天气很好。",
    "I ❤️ emoji 😀👍🏽!", "👨‍👩‍👧‍👦 family, 👩🏽‍💻 coder", "flags 🇯🇵🇺🇸 🏳️‍🌈 🏴‍☠️",
    "Café crème brûlée, naïve façade — Ærøskøbing, Ångström", "e\u0301 vs é, n\u0303 vs ñ",
    "I'm sure they'll say it's fine; we've done what we'd planned. DON'T YOU'RE SHE'S",
    "Hello , world ! Is it ok ? Yes . he said ' no ' and he 's here , isn 't he",
    "Привет, мир!", "مرحبا بالعالم", "नमस्ते दुनिया", "안녕하세요 세계", "ελληνικά γράμματα",
    "a\u0000b\u0007c\u007f", "\u00a0non-breaking\u2009thin\u3000ideographic\u2028line",
    "testing the world's wording", "based on 7 and 77, unbased", "a <mask>  b\t<mask>x", "<s>Hello</s>", "<s> [INST] hi [/INST]",
    "end</s>   next line\n</s>\tx", "<unk> and <0x0A> literally",
    "<|im_start|>user\nHi!<|im_end|>\n<|im_start|>assistant\n", "<|endoftext|>",
    "text<|im_end|>more", "<|im_start|><|im_start|>", " <|im_end|> ", "<|begin_of_text|>x",
    LONG,
]

# Variants: a base vocabulary with metadata changed ("set" keys, "remove" keys, "rename" token
# texts, "token_types" giving new types to tokens by text), the llama_tokenize modes recorded,
# and whether the code point sweep is hashed. "llama-bpe" drops add_bos_token so that llama.cpp's
# default for the Llama 3 kind (add BOS) is what is checked. "tiny-llama-variant" makes two tokens
# user-defined (cut out even when special tokens are not parsed, rendered raw) and names the model
# so that llama.cpp's Phi-3 rule makes special tokens swallow the spaces after them (the rule
# needs a "<|endoftext|>" token, so one is renamed). "jina-mask" has a "<mask>" token that
# swallows the spaces before it. "lost-tokens" loses the result of the merge "b ased" and the
# character "7": llama.cpp then spells "based" by its letters and drops the 7s.
ALL_MODES = ["bos+special", "bos", "special", "plain"]
VARIANTS = {
    "smollm": {"base": "demo", "changes": None, "modes": ALL_MODES, "sweep": True},
    "tiny-llama-spm": {"base": "tiny-llama", "changes": None, "modes": ALL_MODES, "sweep": True},
    "llama-bpe": {"base": "demo", "modes": ALL_MODES, "sweep": True,
                  "changes": {"set": {"tokenizer.ggml.pre": "llama-bpe"},
                              "remove": ["tokenizer.ggml.add_bos_token"]}},
    "default": {"base": "demo", "modes": ["special"], "sweep": True,
                "changes": {"set": {"tokenizer.ggml.pre": "default"}}},
    "gpt-2": {"base": "demo", "modes": ["special"], "sweep": False,
              "changes": {"set": {"tokenizer.ggml.pre": "gpt-2"}}},
    "qwen2": {"base": "demo", "modes": ["special"], "sweep": False,
              "changes": {"set": {"tokenizer.ggml.pre": "qwen2"}}},
    "tiny-llama-variant": {"base": "tiny-llama", "modes": ["special", "plain"], "sweep": False,
                           "changes": {"set": {"general.name": "Phi-3 test"},
                                       "rename": {"\u2581" * 16: "<|endoftext|>"},
                                       "token_types": {"ing": 4, "\u2581world": 4}}},
    "jina-mask": {"base": "demo", "modes": ["special", "plain"], "sweep": False,
                  "changes": {"set": {"tokenizer.ggml.pre": "jina-v2-de"},
                              "rename": {"<empty_output>": "<mask>"}}},
    "lost-tokens": {"base": "demo", "modes": ["special"], "sweep": False,
                    "changes": {"rename": {"based": "<lost based>", "7": "<lost 7>"}}},
    "tiny-llama-no-prefix": {"base": "tiny-llama", "modes": ["special"], "sweep": False,
                             "changes": {"set": {"tokenizer.ggml.add_space_prefix": False}}},
}


def sweep_texts() -> list[str]:
    """Strings that put every code point of planes 0-3 and 14 (surrogates aside) next to
    letters, digits, spaces, punctuation and itself, 64 code points per string."""
    cps = [c for c in (*range(0x0, 0x40000), *range(0xE0000, 0xE1000)) if not 0xD800 <= c < 0xE000]
    texts = []
    for i in range(0, len(cps), 64):
        texts.append("|".join(f"a{ch}b {ch}1{ch}{ch} .{ch}' {ch}s" for ch in map(chr, cps[i:i + 64])))
    return texts


def ids_sha256(list_of_ids) -> str:
    """A hash of a sequence of id lists (each prefixed by its length)."""
    h = hashlib.sha256()
    for ids in list_of_ids:
        h.update(struct.pack(f"<I{len(ids)}i", len(ids), *ids))
    return h.hexdigest()


# --------------------------------------------------------------------------------------------
# Writing a variant GGUF (needs the gguf package, run in a subprocess)

def write_variant(src: str, dst: str, changes_json: str) -> None:
    import gguf
    changes = json.loads(changes_json)
    to_set, to_remove = changes.get("set", {}), changes.get("remove", [])
    reader = gguf.GGUFReader(src)
    arch = reader.fields["general.architecture"]
    writer = gguf.GGUFWriter(dst, bytes(arch.parts[arch.data[0]]).decode())
    tokens = reader.fields["tokenizer.ggml.tokens"]
    texts = [bytes(tokens.parts[i]).decode() for i in tokens.data]
    for key, field in reader.fields.items():
        if key.startswith("GGUF.") or key == "general.architecture" or key in to_remove or key in to_set:
            continue
        vtype = field.types[0]
        if vtype == gguf.GGUFValueType.ARRAY:
            sub = field.types[-1]
            if sub == gguf.GGUFValueType.STRING:
                value = [bytes(field.parts[i]) for i in field.data]
                if key == "tokenizer.ggml.tokens":
                    for old, new in changes.get("rename", {}).items():
                        value[texts.index(old)] = new.encode()
            else:
                value = [field.parts[i].tolist()[0] for i in field.data]
            if key == "tokenizer.ggml.token_type":
                for text, new_type in changes.get("token_types", {}).items():
                    value[texts.index(text)] = new_type
            writer.add_key_value(key, value, vtype, sub)
        elif vtype == gguf.GGUFValueType.STRING:
            writer.add_key_value(key, bytes(field.parts[field.data[0]]), vtype)
        else:
            writer.add_key_value(key, field.parts[field.data[0]].tolist()[0], vtype)
    for key, value in to_set.items():
        if isinstance(value, bool):
            writer.add_bool(key, value)
        else:
            writer.add_string(key, value)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


# --------------------------------------------------------------------------------------------
# Asking llama.cpp

class LlamaVocab:
    """llama.cpp's vocabulary of a GGUF, through llama-cpp-python's low-level bindings."""

    def __init__(self, path: str) -> None:
        import llama_cpp
        self.lc = llama_cpp
        self.llm = llama_cpp.Llama(path, vocab_only=True, verbose=False)
        self.vocab = llama_cpp.llama_model_get_vocab(self.llm._model.model)
        self.n_vocab = llama_cpp.llama_vocab_n_tokens(self.vocab)

    def tokenize(self, text: str, add_special: bool, parse_special: bool) -> list[int]:
        data = text.encode()
        n_max = len(data) + 8
        buf = (self.lc.llama_token * n_max)()
        n = self.lc.llama_tokenize(self.vocab, data, len(data), buf, n_max, add_special, parse_special)
        if n < 0:
            raise RuntimeError(f"tokenize failed for {text!r}")
        return list(buf[:n])

    def detokenize(self, ids: list[int], special: bool) -> str:
        """llama_detokenize(remove_special=False, unparse_special=special), as common_detokenize."""
        arr = (self.lc.llama_token * max(1, len(ids)))(*ids)
        size = 64 + 64 * len(ids)
        buf = ctypes.create_string_buffer(size)
        n = self.lc.llama_detokenize(self.vocab, arr, len(ids), buf, size, False, special)
        if n < 0:
            raise RuntimeError("detokenize buffer too small")
        return buf.raw[:n].decode("utf-8", "replace")

    def pieces_sha256(self, special: bool) -> str:
        """Hash of llama_token_to_piece(lstrip=0) of every token, each prefixed by its length."""
        h = hashlib.sha256()
        buf = ctypes.create_string_buffer(1024)
        for t in range(self.n_vocab):
            n = self.lc.llama_token_to_piece(self.vocab, t, buf, 1024, 0, special)
            if n < 0:
                raise RuntimeError("piece buffer too small")
            h.update(struct.pack("<I", n) + buf.raw[:n])
        return h.hexdigest()


def golden(path: str, variant: dict) -> dict:
    v = LlamaVocab(path)
    lc = v.lc
    out = {
        "source": f"llama.cpp via llama-cpp-python {lc.__version__} (tools/make_tokenizer_golden.py)",
        "base": variant["base"],
        "metadata_changes": variant["changes"],
        "n_vocab": v.n_vocab,
        "bos_id": lc.llama_vocab_bos(v.vocab),
        "eos_id": lc.llama_vocab_eos(v.vocab),
        "add_bos": bool(lc.llama_vocab_get_add_bos(v.vocab)),
        "add_eos": bool(lc.llama_vocab_get_add_eos(v.vocab)),
        "eog_ids": [t for t in range(v.n_vocab) if lc.llama_vocab_is_eog(v.vocab, t)],
        "pieces_sha256": {"plain": v.pieces_sha256(False), "special": v.pieces_sha256(True)},
        "cases": [],
    }
    # Modes: "bos" is llama_tokenize's add_special (BOS as the vocabulary says), "special" its
    # parse_special. "decoded" is llama_detokenize of the first mode's ids, control tokens left
    # out ("plain") or rendered ("special"), and of the "plain" ids when those were recorded.
    for text in TEXTS:
        case = {"text": text, "ids": {}, "decoded": {}}
        for mode in variant["modes"]:
            case["ids"][mode] = v.tokenize(text, mode.startswith("bos"), "special" in mode)
        first = case["ids"][variant["modes"][0]]
        case["decoded"]["plain"] = v.detokenize(first, False)
        case["decoded"]["special"] = v.detokenize(first, True)
        if "plain" in case["ids"]:
            case["decoded"]["plain_ids"] = v.detokenize(case["ids"]["plain"], False)
        out["cases"].append(case)
    if variant["sweep"]:
        out["sweep_sha256"] = ids_sha256(v.tokenize(t, False, False) for t in sweep_texts())
    return out


def main() -> None:
    cache = Path(os.environ.get("PYLLAMA_CACHE") or Path.home() / ".cache" / "pyllama")
    golden_dir = Path(os.environ.get("PYLLAMA_GOLDEN_DIR") or REPO.parent / "shared" / "golden")
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--demo", default=str(cache / "SmolLM2-135M-Instruct.Q4_1.gguf"))
    ap.add_argument("--tiny-llama", default=str(golden_dir / "tiny-llama-256.F16.gguf"))
    ap.add_argument("--gguf-python", default="python3", help="a Python that has the gguf package")
    ap.add_argument("--write-variant", nargs=3, metavar=("SRC", "DST", "CHANGES"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.write_variant:
        write_variant(*args.write_variant)
        return

    OUT.mkdir(parents=True, exist_ok=True)
    bases = {"demo": args.demo, "tiny-llama": args.tiny_llama}
    with tempfile.TemporaryDirectory() as tmp:
        for name, variant in VARIANTS.items():
            path = bases[variant["base"]]
            if variant["changes"]:
                path = os.path.join(tmp, f"{name}.gguf")
                subprocess.run([args.gguf_python, __file__, "--write-variant", bases[variant["base"]],
                                path, json.dumps(variant["changes"])], check=True)
            out = OUT / f"{name}.json"
            out.write_text(json.dumps(golden(path, variant), ensure_ascii=False, separators=(",", ":")) + "\n")
            print(f"{out.relative_to(REPO)}: {out.stat().st_size} bytes")


if __name__ == "__main__":
    main()
