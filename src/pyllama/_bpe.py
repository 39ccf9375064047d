"""Byte-level BPE vocabularies (tokenizer.ggml.model "gpt2"): llama.cpp's merge, run by the
Hugging Face ``tokenizers`` library.

The pipeline is llama.cpp's: split with the pre-tokenizer's regexes, map each piece's bytes to
GPT-2's printable characters, then merge lowest-rank pairs (leftmost first). Two places where
``tokenizers`` differs are closed here:
- it refuses merges whose result is not a token, and drops characters that are not tokens before
  merging; llama.cpp keeps both. Such strings get ids past the vocabulary, and a final piece with
  such an id becomes what llama.cpp emits for it: the tokens of its single ASCII characters.
- special tokens are never given to ``tokenizers`` (the shared partitioner cuts them out first),
  so its own added-token matching cannot change the result.
"""
from __future__ import annotations

from tokenizers import Regex, Tokenizer, models, pre_tokenizers

from ._core import PyllamaError
from ._vocab import Vocab


def byte_to_unicode() -> dict[int, str]:
    """GPT-2's byte -> printable character map (printable Latin-1 bytes map to themselves)."""
    keep = [*range(0x21, 0x7F), *range(0xA1, 0xAD), *range(0xAE, 0x100)]
    table = {b: chr(b) for b in keep}
    extra = 0
    for b in range(256):
        if b not in table:
            table[b] = chr(256 + extra)
            extra += 1
    return table


class BpeModel:
    """Encodes text fragments (no special tokens) to token ids exactly as llama.cpp's BPE does."""

    def __init__(self, vocab: Vocab) -> None:
        assert vocab.pre is not None
        n = vocab.n_vocab
        ids = dict(vocab.token_to_id)
        # Every byte character and every merge result must have an id for `tokenizers`.
        missing = [c for c in byte_to_unicode().values() if c not in ids]
        missing += [a + b for a, b in vocab.merges if a + b not in ids]
        self._extra: dict[int, list[int]] = {}
        for text in dict.fromkeys(missing):
            self._extra[n + len(self._extra)] = [
                vocab.token_to_id[chr(b)] for b in text.encode() if b < 0x80 and chr(b) in vocab.token_to_id]
            ids[text] = n + len(self._extra) - 1
        self._n_vocab = n

        try:
            bpe = models.BPE(vocab=ids, merges=vocab.merges, ignore_merges=vocab.pre.ignore_merges)
        except Exception as exc:  # tokenizers reports every problem as a plain Exception
            raise PyllamaError(f"tokenizer.ggml.merges: tokenizers rejected the vocabulary: {exc}") from None
        tok = Tokenizer(bpe)
        tok.pre_tokenizer = pre_tokenizers.Sequence(
            [pre_tokenizers.Split(Regex(r), behavior="isolated") for r in vocab.pre.regexes]
            + [pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
        self._tok = tok

    def encode(self, text: str) -> list[int]:
        """Ids of one text fragment."""
        ids = self._tok.encode(text, add_special_tokens=False).ids
        if self._extra and max(ids, default=0) >= self._n_vocab:
            ids = [j for i in ids for j in (self._extra[i] if i >= self._n_vocab else (i,))]
        return ids
