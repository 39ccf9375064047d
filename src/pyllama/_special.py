"""Cutting special tokens out of text before the subword model sees it (llama.cpp's
``tokenizer_st_partition``), shared by both tokenizer kinds.

Special tokens are tried one at a time, longest first; each cuts every occurrence out of every
text fragment left by the ones before it. User-defined tokens are always cut; control and
unknown tokens only when the caller asks to parse special tokens.
"""
from __future__ import annotations

from typing import Iterable, Union

from ._vocab import SpecialToken

Fragment = Union[str, int]  # raw text, or the id of a special token

# C's isspace() in the "C" locale, which llama.cpp uses for lstrip/rstrip.
_C_SPACE = " \t\n\v\f\r"


def partition(text: str, specials: Iterable[SpecialToken], parse_special: bool) -> list[Fragment]:
    """Split `text` into text fragments and special-token ids, in order. Empty text gives []."""
    fragments: list[Fragment] = [text] if text else []
    for special in specials:
        if special.control and not parse_special:
            continue
        out: list[Fragment] = []
        for fragment in fragments:
            if isinstance(fragment, int) or special.text not in fragment:
                out.append(fragment)
                continue
            _cut(fragment, special, out)
        fragments = out
    return fragments


def _cut(fragment: str, special: SpecialToken, out: list[Fragment]) -> None:
    start = 0
    while True:
        match = fragment.find(special.text, start)
        if match < 0:
            left = fragment[start:]
            if left:
                out.append(left)
            return
        left = fragment[start:match]
        if special.lstrip:
            left = left.rstrip(_C_SPACE)
        if left:
            out.append(left)
        out.append(special.id)
        start = match + len(special.text)
        if special.rstrip:
            while start < len(fragment) and fragment[start] in _C_SPACE:
                start += 1
