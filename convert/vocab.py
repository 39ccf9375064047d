"""The vocabulary part of a GGUF file, as llama.cpp's converter writes it."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Union

from .gguf_writer import BOOL, FLOAT32, INT32, STRING, Metadata

# tokenizer.ggml.token_type values (llama.cpp's llama_token_type).
NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED, BYTE = 1, 2, 3, 4, 5, 6

# Special token kinds -> the GGUF key of their id (llama.cpp spells "seperator").
SPECIAL_ID_KEYS = {
    "bos": "tokenizer.ggml.bos_token_id",
    "eos": "tokenizer.ggml.eos_token_id",
    "unk": "tokenizer.ggml.unknown_token_id",
    "sep": "tokenizer.ggml.seperator_token_id",
    "pad": "tokenizer.ggml.padding_token_id",
    "mask": "tokenizer.ggml.mask_token_id",
    "eot": "tokenizer.ggml.eot_token_id",
    "eom": "tokenizer.ggml.eom_token_id",
}
# Kinds whose "add this token" flag GGUF has a key for.
ADD_FLAG_KINDS = ("bos", "eos", "sep")

ChatTemplate = Union[str, Sequence[Dict[str, str]]]


@dataclass
class Vocabulary:
    model: str                      # tokenizer.ggml.model: "llama" (SentencePiece) or "gpt2"
    pre: str                        # tokenizer.ggml.pre
    tokens: List[str]
    types: List[int]
    scores: Optional[List[float]] = None   # SentencePiece only
    merges: List[str] = field(default_factory=list)  # byte-level BPE only
    special_ids: Dict[str, int] = field(default_factory=dict)
    add_special: Dict[str, bool] = field(default_factory=dict)
    chat_template: Optional[ChatTemplate] = None
    add_space_prefix: Optional[bool] = None

    def add_to(self, md: Metadata) -> None:
        md.add_string("tokenizer.ggml.model", self.model)
        md.add_string("tokenizer.ggml.pre", self.pre)
        md.add_array("tokenizer.ggml.tokens", STRING, self.tokens)
        if self.scores is not None:
            md.add_array("tokenizer.ggml.scores", FLOAT32, self.scores)
        md.add_array("tokenizer.ggml.token_type", INT32, self.types)
        if self.merges:
            md.add_array("tokenizer.ggml.merges", STRING, self.merges)
        for kind, token_id in self.special_ids.items():
            if kind in SPECIAL_ID_KEYS:  # llama.cpp has no key for "cls" and skips it
                md.add_uint32(SPECIAL_ID_KEYS[kind], token_id)
        for kind, value in self.add_special.items():
            if kind in ADD_FLAG_KINDS:
                md.add_scalar(f"tokenizer.ggml.add_{kind}_token", BOOL, value)
        if self.add_space_prefix is not None:
            md.add_bool("tokenizer.ggml.add_space_prefix", self.add_space_prefix)
        _add_chat_template(md, self.chat_template)


def _add_chat_template(md: Metadata, template: Optional[ChatTemplate]) -> None:
    """One template, or named ones (the one named "default" becomes the main template)."""
    if template is None:
        return
    if not isinstance(template, str):
        default, names = None, []
        for choice in template:
            name = "".join(c if c.isascii() and c.isalnum() else "_" for c in str(choice.get("name", "")))
            text = choice.get("template")
            if not name or not isinstance(text, str):
                continue
            if name == "default":
                default = text
            elif name not in names:
                names.append(name)
                md.add_string(f"tokenizer.chat_template.{name}", text)
        if names:
            md.add_array("tokenizer.chat_templates", STRING, names)
        if default is None:
            return
        template = default
    md.add_string("tokenizer.chat_template", template)


def looks_special(token: str) -> bool:
    """Added tokens that llama.cpp's converter treats as control tokens even when the tokenizer
    does not mark them special."""
    return (token in ("<pad>", "<mask>", "<2mass>", "[@BOS@]")
            or (token.startswith("<|") and token.endswith("|>"))
            or (token.startswith("<\uff5c") and token.endswith("\uff5c>"))
            or (token.startswith("<unused") and token.endswith(">")))
