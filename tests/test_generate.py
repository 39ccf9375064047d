"""Model.generate and the Model API's argument checks, on the demo model."""
import subprocess
import sys

import numpy as np
import pytest

import pyllama
from gguf_bytes import write_gguf

PROMPT = "<|im_start|>user\nName three colours.<|im_end|>\n<|im_start|>assistant\n"


@pytest.fixture(scope="module")
def model(demo_model):
    return pyllama.Model(demo_model, n_ctx=512, n_threads=2)


def _run(model, prompt=PROMPT, **kw):
    chunks = list(model.generate(prompt, special=True, **kw))
    return chunks, "".join(c.text for c in chunks), [t for c in chunks for t in c.token_ids]


def test_greedy_follows_the_argmax_of_the_logits(model):
    chunks, text, ids = _run(model, max_tokens=6, temperature=0)
    prompt_ids = model.tokenize(PROMPT, special=True)
    logits = model.logits(prompt_ids + ids[:-1])
    assert ids == np.argmax(logits[len(prompt_ids) - 1:], axis=1).tolist()


def test_only_the_last_chunk_has_a_finish_reason(model):
    chunks, text, ids = _run(model, max_tokens=5, temperature=0)
    assert [c.finish_reason for c in chunks[:-1]] == [None] * (len(chunks) - 1)
    assert chunks[-1].finish_reason == "length" and len(ids) == 5


def test_streamed_text_is_the_text_of_the_generated_tokens(model):
    chunks, text, ids = _run(model, max_tokens=24, temperature=0)
    assert text == b"".join(model.tokenizer.token_bytes(t) for t in ids).decode("utf-8")


def test_stops_at_end_of_generation_token(model):
    chunks, text, ids = _run(model, max_tokens=200, temperature=0)
    assert chunks[-1].finish_reason == "eos"
    assert ids[-1] in model.tokenizer.eog_ids and text and "<|im_end|>" not in text


def test_stop_string_ends_generation_and_is_not_returned(model):
    _, full, _ = _run(model, max_tokens=24, temperature=0)
    stop = full[len(full) // 2: len(full) // 2 + 3]
    chunks, text, _ = _run(model, max_tokens=24, temperature=0, stop=[stop])
    assert chunks[-1].finish_reason == "stop"
    assert text == full[: full.index(stop)]


def test_seed_reproduces_sampling_and_other_seeds_differ(model):
    kw = dict(max_tokens=16, temperature=1.2, top_k=0, top_p=1.0, min_p=0.0)
    a = _run(model, seed=7, **kw)[2]
    assert a == _run(model, seed=7, **kw)[2]
    assert any(_run(model, seed=s, **kw)[2] != a for s in (8, 9, 10))


def test_prompt_as_token_ids_matches_prompt_as_text(model):
    ids = model.tokenize(PROMPT, special=True)
    assert _run(model, ids, max_tokens=8, temperature=0)[2] == _run(model, max_tokens=8, temperature=0)[2]


def test_reused_prefix_gives_the_same_result_as_a_fresh_sequence(model):
    first = _run(model, max_tokens=8, temperature=0)[1]
    follow = PROMPT + first + "<|im_end|>\n<|im_start|>user\nAnd three more?<|im_end|>\n<|im_start|>assistant\n"
    reused = _run(model, follow, max_tokens=8, temperature=0)[2]
    model.reset()
    assert reused == _run(model, follow, max_tokens=8, temperature=0)[2]


def test_context_running_out_ends_with_length(demo_model):
    small = pyllama.Model(demo_model, n_ctx=24, n_threads=1)
    n_prompt = len(small.tokenize(PROMPT, special=True))
    chunks, _, ids = _run(small, max_tokens=100, temperature=0)
    assert chunks[-1].finish_reason in ("length", "eos")
    assert n_prompt + len(ids) <= 24 + 1  # the last sampled token needs no room of its own


def test_special_tokens_in_a_text_prompt_are_parsed_only_when_asked(model):
    plain = model.tokenize(PROMPT, special=False)
    assert model.tokenize(PROMPT, special=True) != plain
    first = list(model.generate(PROMPT, max_tokens=1, temperature=0))[0].token_ids
    assert first == [int(np.argmax(model.logits(plain)[-1]))]


def test_prompt_longer_than_context_names_both_numbers(demo_model):
    small = pyllama.Model(demo_model, n_ctx=8, n_threads=1)
    with pytest.raises(ValueError, match=r"(?s)\b1[0-9]\b.*\b8\b"):
        small.generate(PROMPT, special=True)


@pytest.mark.parametrize("kw,name", [
    ({"temperature": -1}, "temperature"), ({"top_p": 0}, "top_p"), ({"top_p": 1.5}, "top_p"),
    ({"max_tokens": -1}, "max_tokens"), ({"min_p": 2}, "min_p"), ({"top_k": -3}, "top_k"),
    ({"stop": [""]}, "stop"), ({"repeat_penalty": 0}, "repeat_penalty"),
])
def test_bad_generation_arguments_raise_before_any_work(model, kw, name):
    with pytest.raises(ValueError, match=name):
        model.generate(PROMPT, special=True, **kw)


@pytest.mark.parametrize("bad", [[-1], [10**9], [1.5], [True], "text"])
def test_bad_token_ids_raise_value_error(model, bad):
    with pytest.raises(ValueError):
        model.logits(bad)
    with pytest.raises(ValueError):
        model.generate(bad if not isinstance(bad, str) else [bad])


def test_empty_prompt_is_rejected(model):
    with pytest.raises(ValueError, match="empty"):
        model.generate([])


def test_missing_file_raises_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError):
        pyllama.Model(tmp_path / "nope.gguf")


@pytest.mark.parametrize("kw", [{"n_ctx": 0}, {"n_ctx": 10**7}, {"n_threads": 0}, {"n_batch": 0}])
def test_bad_model_arguments_raise_value_error(demo_model, kw):
    with pytest.raises(ValueError, match=next(iter(kw))):
        pyllama.Model(demo_model, **kw)


def test_unsupported_architecture_is_named(tmp_path):
    path = write_gguf(tmp_path / "falcon.gguf", "falcon")
    with pytest.raises(pyllama.PyllamaError, match="falcon"):
        pyllama.Model(path)


def test_cli_generates_with_the_demo_model(demo_model):
    out = subprocess.run([sys.executable, "-m", "pyllama.cli", "generate", "-m", str(demo_model),
                          "The capital of France is", "-n", "8", "--temperature", "0"],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert len(out.stdout.strip()) > 0


def test_cli_reports_a_missing_model_file(tmp_path):
    out = subprocess.run([sys.executable, "-m", "pyllama.cli", "generate", "-m", str(tmp_path / "x.gguf"), "hi"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 1 and "not found" in out.stderr


def test_streamed_japanese_and_emoji_never_split_a_character(model):
    # High temperature over a Japanese/emoji prompt makes the demo model emit multi-byte
    # characters spread over several byte-level tokens; a chunk boundary inside a character
    # would show up as U+FFFD in the joined text that the whole decode does not have.
    # Which samples contain multi-byte text depends on the logits' last bits (they differ between
    # kernel instruction-set levels), so that is required of the three samples together.
    prompt = "<|im_start|>user\n日本の首都はどこですか？🗼🍣<|im_end|>\n<|im_start|>assistant\n"
    streamed_multibyte = False
    for seed in (1, 2, 3):
        chunks, text, ids = _run(model, prompt, max_tokens=48, temperature=1.3, top_k=0, top_p=1.0,
                                 min_p=0.0, seed=seed)
        whole = b"".join(model.tokenizer.token_bytes(t) for t in ids if t not in model.tokenizer.eog_ids)
        assert text == whole.decode("utf-8", errors="replace"), f"seed {seed}"
        streamed_multibyte |= any(len(c.text.encode()) > len(c.text) for c in chunks)
    assert streamed_multibyte
