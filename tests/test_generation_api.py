"""The notebook-facing generation API on the demo model: logprobs, stats, cancellation, the
prompt cache, logits hooks, perplexity, logging and repr."""
import logging
import threading
import time

import numpy as np
import pytest

import pyllama

PROMPT = "<|im_start|>user\nName three colours.<|im_end|>\n<|im_start|>assistant\n"


@pytest.fixture(scope="module")
def model(demo_model):
    return pyllama.Model(demo_model, n_ctx=1024, n_threads=2, n_batch=16)


def _log_softmax(x):
    x = x.astype(np.float64)
    m = x.max()
    return x - m - np.log(np.exp(x - m).sum())


def test_logprobs_equal_log_softmax_of_the_logits_at_each_position(model):
    c = model.complete(PROMPT, special=True, max_tokens=6, temperature=0.9, seed=3, logprobs=4)
    prompt_ids = model.tokenize(PROMPT, special=True)
    logits = model.logits(prompt_ids + c.token_ids[:-1])[len(prompt_ids) - 1:]
    for i, token in enumerate(c.token_ids):
        lsm = _log_softmax(logits[i])
        assert c.logprobs[i] == pytest.approx(lsm[token], abs=2e-3)
        top = c.top_logprobs[i]
        assert [t.id for t in top] == np.argsort(-lsm, kind="stable")[:4].tolist()
        assert [t.logprob for t in top] == pytest.approx(np.sort(lsm)[::-1][:4], abs=2e-3)
        assert top[0].text == model.tokenizer.decode([top[0].id], special=True)


def test_chunks_carry_running_stats(model):
    model.reset()
    chunks = list(model.generate(PROMPT, special=True, max_tokens=5, temperature=0))
    n_prompt = len(model.tokenize(PROMPT, special=True))
    assert [c.stats.generated_tokens for c in chunks] == [1, 2, 3, 4, 5]
    last = chunks[-1].stats
    assert last.prompt_tokens == n_prompt and last.cached_tokens == 0
    assert last.prompt_tokens_per_second > 0 and last.generation_tokens_per_second > 0
    assert 0 < last.time_to_first_token <= last.prompt_seconds + last.generation_seconds
    assert chunks[0].stats.time_to_first_token == last.time_to_first_token


def test_prompt_cache_reuses_the_shared_prefix_with_identical_results(model, capsys):
    first = [{"role": "user", "content": "Write a long story about a cat who lives in a lighthouse. " * 6}]
    model.reset()
    a = model.chat(first, max_tokens=8, temperature=0).text()
    follow = first + [{"role": "assistant", "content": a.text}, {"role": "user", "content": "Why?"}]
    warm = model.chat(follow, max_tokens=8, temperature=0).text()
    model.reset()
    cold = model.chat(follow, max_tokens=8, temperature=0).text()
    assert warm.token_ids == cold.token_ids and warm.logprobs == pytest.approx(cold.logprobs, abs=1e-3)
    assert warm.stats.cached_tokens >= a.stats.prompt_tokens
    assert cold.stats.cached_tokens == 0
    with capsys.disabled():  # reported, not asserted: the machine is shared
        print(f"\n  prompt cache: {warm.stats.prompt_tokens} prompt tokens, {warm.stats.cached_tokens} cached: "
              f"{warm.stats.prompt_seconds * 1e3:.0f} ms vs {cold.stats.prompt_seconds * 1e3:.0f} ms cold")


def test_cancel_from_another_thread_stops_within_one_token(model):
    gen = model.generate(PROMPT, special=True, max_tokens=200, temperature=0)
    got = [next(gen) for _ in range(3)]
    t = threading.Thread(target=gen.cancel)
    t.start()
    t.join()
    last = next(gen)
    assert last.finish_reason == "cancelled" and last.token_ids == []
    with pytest.raises(StopIteration):
        next(gen)
    assert all(c.finish_reason is None for c in got)
    # the model is still usable and its cache consistent
    again = model.complete(PROMPT, special=True, max_tokens=4, temperature=0)
    assert again.token_ids[:3] == [c.token_ids[0] for c in got]


def _long_prompt(model):
    return model.tokenize("Once upon a time, in a land far away, there lived a curious fox. " * 8)


def test_cancel_during_a_long_prompt_stops_between_batches(model, monkeypatch):
    ids = _long_prompt(model)
    model.reset()
    gen = model.generate(ids, max_tokens=4, temperature=0)
    real = model._eval_ids
    calls = []

    def eval_then_cancel(batch, all_logits):
        calls.append(len(batch))
        out = real(batch, all_logits)
        gen.cancel()
        return out

    monkeypatch.setattr(model, "_eval_ids", eval_then_cancel)
    chunks = list(gen)
    assert chunks[-1].finish_reason == "cancelled" and len(chunks) == 1
    assert calls == [model.n_batch] and model.n_past == model.n_batch
    monkeypatch.undo()
    resumed = model.complete(ids, max_tokens=4, temperature=0)
    assert resumed.stats.cached_tokens == model.n_batch
    model.reset()
    assert model.complete(ids, max_tokens=4, temperature=0).token_ids == resumed.token_ids


def test_keyboard_interrupt_mid_prompt_leaves_the_model_usable(model, monkeypatch):
    ids = _long_prompt(model)
    model.reset()
    real_ctx_eval = model._ctx.eval
    n = [0]

    class InterruptingContext:  # the interrupt lands after the core ran a batch, before bookkeeping
        def __getattr__(self, name):
            return getattr(model._ctx_real, name)

        def eval(self, tokens, all_logits):
            out = real_ctx_eval(tokens, all_logits)
            n[0] += 1
            if n[0] == 2:
                raise KeyboardInterrupt
            return out

    model._ctx_real = model._ctx
    monkeypatch.setattr(model, "_ctx", InterruptingContext())
    with pytest.raises(KeyboardInterrupt):
        model.complete(ids, max_tokens=4, temperature=0)
    monkeypatch.setattr(model, "_ctx", model._ctx_real)
    assert model.n_past == 2 * model.n_batch and len(model._tokens) == model.n_batch
    after = model.complete(ids, max_tokens=4, temperature=0)
    model.reset()
    fresh = model.complete(ids, max_tokens=4, temperature=0)
    assert after.token_ids == fresh.token_ids
    assert after.logprobs == pytest.approx(fresh.logprobs, abs=1e-3)


def test_breaking_out_of_the_loop_does_no_more_work(model):
    model.reset()
    gen = model.generate(PROMPT, special=True, max_tokens=50, temperature=0)
    for i, _ in enumerate(gen):
        if i == 2:
            break
    n_past = model.n_past
    time.sleep(0.05)
    assert model.n_past == n_past  # nothing runs in the background
    gen.close()
    with pytest.raises(StopIteration):
        next(gen)


def test_logit_bias_forces_and_bans_tokens(model):
    base = model.complete(PROMPT, special=True, max_tokens=4, temperature=0)
    forced = model.tokenize(" blue")[-1]
    c = model.complete(PROMPT, special=True, max_tokens=4, temperature=0, logit_bias={forced: 100.0})
    assert c.token_ids == [forced] * 4
    banned = model.complete(PROMPT, special=True, max_tokens=4, temperature=0,
                            logit_bias={base.token_ids[0]: -np.inf})
    assert banned.token_ids[0] != base.token_ids[0]


def test_logits_processor_and_stopping_criteria(model):
    seen = []

    def only_even(ids, logits):
        seen.append(len(ids))
        out = logits.copy()
        out[1::2] = -np.inf
        return out

    c = model.complete(PROMPT, special=True, max_tokens=5, temperature=0.8, seed=1, logits_processor=only_even,
                       stopping_criteria=lambda ids, logits: len(seen) == 3)
    assert all(t % 2 == 0 for t in c.token_ids)
    assert c.finish_reason == "stop" and len(c.token_ids) == 3
    n_prompt = len(model.tokenize(PROMPT, special=True))
    assert seen == [n_prompt, n_prompt + 1, n_prompt + 2]


def test_identity_hooks_keep_greedy_and_seeded_sampling_exact(model):
    for kw in (dict(temperature=0), dict(temperature=1.0, seed=5)):
        a = model.complete(PROMPT, special=True, max_tokens=8, **kw)
        b = model.complete(PROMPT, special=True, max_tokens=8, logit_bias={}, **kw,
                           logits_processor=lambda ids, x: x, stopping_criteria=lambda ids, x: False)
        assert a.token_ids == b.token_ids


@pytest.mark.parametrize("kw, match", [
    (dict(logprobs=0), "logprobs"),
    (dict(logprobs=True), "logprobs"),
    (dict(logit_bias={-1: 1.0}), "logit_bias key"),
    (dict(logit_bias={5: float("nan")}), r"logit_bias\[5\]"),
    (dict(logit_bias=[1, 2]), "logit_bias must be a dict"),
    (dict(logits_processor=3), "logits_processor"),
    (dict(stopping_criteria=[None]), "stopping_criteria"),
])
def test_bad_hook_arguments_raise_before_any_work(model, kw, match):
    with pytest.raises(ValueError, match=match):
        model.generate(PROMPT, **kw)


def test_a_processor_returning_garbage_raises_a_clear_error(model):
    with pytest.raises(ValueError, match="logits_processor"):
        model.complete(PROMPT, max_tokens=2, logits_processor=lambda ids, x: x[:10])
    with pytest.raises(ValueError, match="no token to sample"):
        model.complete(PROMPT, max_tokens=2, logits_processor=lambda ids, x: np.full_like(x, -np.inf))
    assert model.complete(PROMPT, special=True, max_tokens=2, temperature=0).finish_reason == "length"


def test_full_context_ends_with_length_and_says_why(demo_model, caplog):
    small = pyllama.Model(demo_model, n_ctx=24, n_threads=1)
    prompt = small.tokenize(PROMPT, special=True)
    with caplog.at_level(logging.WARNING, logger="pyllama"):
        c = small.complete(prompt, max_tokens=100, temperature=0, logit_bias={t: -np.inf for t in small.tokenizer.eog_ids})
    assert c.finish_reason == "length" and "context is full" in c.finish_detail
    assert len(prompt) + len(c.token_ids) == small.n_ctx + 1  # the last sampled token needs no room
    assert any("context is full" in r.getMessage() for r in caplog.records)


ENGLISH = (
    "The history of the bicycle begins in the early nineteenth century, when inventors in Europe built "
    "simple wooden machines that riders pushed along with their feet. Over the following decades, pedals, "
    "chains and air-filled tyres made cycling faster and more comfortable, and by the end of the century "
    "millions of people rode bicycles to work, to school and into the countryside. The bicycle changed "
    "daily life in many ways. It gave workers a cheap way to travel, it helped women gain more freedom of "
    "movement, and it encouraged governments to build better roads. Today the bicycle is still one of the "
    "most efficient ways to move a person from one place to another. Many cities are building new bike "
    "lanes, and more people are choosing to cycle for their health and for the environment. "
)


def test_perplexity_of_english_is_low_and_shuffled_text_scores_worse(model):
    ppl = model.perplexity(ENGLISH, window=64)
    words = ENGLISH.split()
    rng = np.random.default_rng(0)
    shuffled = model.perplexity(" ".join(rng.permutation(words)), window=64)
    # A uniform guess over the 49152-token vocabulary scores 49152 and English unigram
    # frequencies alone score in the hundreds; a working 135M model on plain prose with at
    # least 32 tokens of context is far below 40 (it scores about a third of that).
    assert np.isfinite(ppl.value) and 1 < ppl.value < 40
    assert shuffled.value > 2 * ppl.value
    assert ppl.nll.shape == (((len(model.tokenize(ENGLISH, add_bos=False)) - 1) // 64) * 32,)
    assert ppl.value == pytest.approx(np.exp(ppl.nll.mean()))


def test_perplexity_rejects_short_text_and_bad_window(model):
    with pytest.raises(ValueError, match="needs more than window"):
        model.perplexity("Too short.", window=64)
    with pytest.raises(ValueError, match="window"):
        model.perplexity(ENGLISH, window=2)


def test_repr_shows_architecture_size_quantization_context_threads(model):
    r = repr(model)
    assert "llama" in r and "135M params" in r and "Q4_1" in r and "n_ctx=1024" in r and "n_threads=2" in r


def test_nothing_is_printed_by_default(demo_model, capfd):
    m = pyllama.Model(demo_model, n_ctx=64, n_threads=1)
    small = m.complete(PROMPT, special=True, max_tokens=100, temperature=0)
    m2 = pyllama.Model(demo_model, n_ctx=20, n_threads=1)
    m2.complete(m2.tokenize(PROMPT, special=True), max_tokens=50, temperature=0,
                logit_bias={t: -np.inf for t in m2.tokenizer.eog_ids})  # logs a warning
    out, err = capfd.readouterr()
    assert small.text and out == "" and err == ""


def test_saved_state_continues_exactly_in_a_new_session(model, demo_model, tmp_path):
    model.reset()
    prefix = model.tokenize("A long system prompt about lighthouses and cats. " * 4)
    model.eval(prefix, all_logits=False)
    path = tmp_path / "prompt.state"
    model.save_state(path)
    other = pyllama.Model(demo_model, n_ctx=512, n_threads=1, n_batch=16)
    other.load_state(path)
    assert other.n_past == len(prefix)
    follow = model.tokenize(" The cat")
    resumed = other.complete(prefix + follow, max_tokens=6, temperature=0, logprobs=1)
    assert resumed.stats.cached_tokens == len(prefix)
    other.reset()
    fresh = other.complete(prefix + follow, max_tokens=6, temperature=0)
    assert resumed.token_ids == fresh.token_ids
    assert resumed.logprobs == pytest.approx(fresh.logprobs, abs=1e-4)


def test_bad_state_files_are_refused_with_clear_errors(model, golden_dir, tmp_path):
    model.reset()
    model.eval(model.tokenize("Hello there, general Kenobi."), all_logits=False)
    good = tmp_path / "good.state"
    model.save_state(good)
    data = good.read_bytes()
    cases = {
        "not a pyllama state file": b"GGUF" + data[4:],
        "truncated": data[:20],
        "format version": data[:14] + b"\x09" + data[15:],
        "bytes": data[:-1],
        "token ids outside": data[:14 + 48] + (10**6).to_bytes(4, "little") + data[14 + 52:],
    }
    for match, blob in cases.items():
        bad = tmp_path / "bad.state"
        bad.write_bytes(blob)
        with pytest.raises(ValueError, match=match):
            model.load_state(bad)
    other_model = pyllama.Model(golden_dir / "tiny-llama-256.F16.gguf", n_threads=1)
    with pytest.raises(ValueError, match="different model"):
        other_model.load_state(good)
    f32 = pyllama.Model(model.path, n_ctx=512, n_threads=1, kv_cache_type="f32")
    with pytest.raises(ValueError, match="KV cache of ggml type"):
        f32.load_state(good)
    model.reset()
    with pytest.raises(ValueError, match="no sequence to save"):
        model.save_state(tmp_path / "empty.state")


def test_embeddings_are_normalized_mean_pooled_hidden_states(model):
    e = model.embed("The cat sat on the mat.")
    assert e.shape == (576,) and e.dtype == np.float32
    assert np.linalg.norm(e) == pytest.approx(1.0, abs=1e-5)
    ids = model.tokenize("The cat sat on the mat.")
    model.reset()
    hidden = model._ctx.eval_hidden(np.asarray(ids, dtype=np.int32))
    mean = hidden.astype(np.float64).mean(axis=0)
    np.testing.assert_allclose(e, mean / np.linalg.norm(mean), atol=1e-6)
    near = model.embed("A cat is sitting on the mat.")
    far = model.embed("Quarterly revenue rose by four percent in the bond market.")
    assert float(e @ near) > float(e @ far)
