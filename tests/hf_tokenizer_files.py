"""Hugging Face tokenizer.json files rebuilt from the vocabularies of llama.cpp-made GGUF files.

The real tokenizer.json of SmolLM2 is not at hand, but its GGUF (the demo model, converted by
llama.cpp) holds its tokens, merges and token types; with SmolLM's pre-tokenizer settings (split
digits, then GPT-2's byte-level regex) they make the same tokenizer. That gives the converter a
real tokenizer to identify by llama.cpp's check hash, and its vocabulary to compare with the one
llama.cpp wrote.
"""
from __future__ import annotations

import json
from pathlib import Path

from gguf import GGUFReader

CONTROL = 3
SMOLLM_PRE_TOKENIZER = {"type": "Sequence", "pretokenizers": [
    {"type": "Digits", "individual_digits": True},
    {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True}]}
BYTE_LEVEL = {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": False, "use_regex": True}


def gguf_vocab(path: Path) -> dict:
    r = GGUFReader(str(path))
    return {k: r.fields[k].contents() for k in r.fields if k.startswith("tokenizer.")}


def write_smollm_tokenizer(folder: Path, gguf_path: Path) -> dict:
    """tokenizer.json and tokenizer_config.json of SmolLM2 in `folder`; returns the GGUF's
    tokenizer.* metadata they were made from."""
    md = gguf_vocab(gguf_path)
    tokens, types = md["tokenizer.ggml.tokens"], md["tokenizer.ggml.token_type"]
    added = [{"id": i, "content": t, "single_word": False, "lstrip": False, "rstrip": False,
              "normalized": False, "special": True} for i, t in enumerate(tokens) if types[i] == CONTROL]
    tokenizer = {
        "version": "1.0", "truncation": None, "padding": None, "added_tokens": added, "normalizer": None,
        "pre_tokenizer": SMOLLM_PRE_TOKENIZER, "post_processor": BYTE_LEVEL, "decoder": BYTE_LEVEL,
        "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
                  "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False, "ignore_merges": False,
                  "vocab": {t: i for i, t in enumerate(tokens)},
                  "merges": [m.split(" ") for m in md["tokenizer.ggml.merges"]]},
    }
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "tokenizer.json").write_text(json.dumps(tokenizer, ensure_ascii=False), encoding="utf-8")
    bos, eos = tokens[md["tokenizer.ggml.bos_token_id"]], tokens[md["tokenizer.ggml.eos_token_id"]]
    (folder / "tokenizer_config.json").write_text(json.dumps({
        "add_prefix_space": False, "bos_token": bos, "eos_token": eos, "unk_token": tokens[md["tokenizer.ggml.unknown_token_id"]],
        "pad_token": tokens[md["tokenizer.ggml.padding_token_id"]], "chat_template": md["tokenizer.chat_template"],
        "clean_up_tokenization_spaces": False, "model_max_length": 8192, "tokenizer_class": "GPT2Tokenizer",
    }, ensure_ascii=False), encoding="utf-8")
    return md
