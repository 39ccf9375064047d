"""Chat prompts: the file's template rendered as transformers renders it, the Llama 2 fallback,
BOS handling, and untrusted templates kept in the sandbox."""
import jinja2
import jinja2.ext
import pytest
from jinja2.sandbox import ImmutableSandboxedEnvironment

import pyllama
from pyllama.chat import render_chat_template

CONVERSATION = [
    {"role": "system", "content": "You answer in one word."},
    {"role": "user", "content": "Capital of France?"},
    {"role": "assistant", "content": "Paris."},
    {"role": "user", "content": "And of Japan? 日本 🗾"},
]


@pytest.fixture(scope="module")
def demo(demo_model):
    return pyllama.Model(demo_model, n_ctx=512, n_threads=1)


@pytest.fixture(scope="module")
def llama2(golden_dir):
    return pyllama.Model(golden_dir / "tiny-llama-256.F16.gguf", n_threads=1)


def _jinja_direct(template, messages, add_generation_prompt):
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[jinja2.ext.loopcontrols])
    return env.from_string(template).render(messages=messages, add_generation_prompt=add_generation_prompt,
                                            bos_token="<|im_start|>", eos_token="<|im_end|>")


@pytest.mark.parametrize("add_generation_prompt", [True, False])
@pytest.mark.parametrize("n_messages", [1, 2, 4])
def test_file_template_renders_as_jinja2_does(demo, n_messages, add_generation_prompt):
    messages = CONVERSATION[-n_messages:]
    template = demo.metadata["tokenizer.chat_template"]
    expected = _jinja_direct(template, messages, add_generation_prompt)
    assert demo.apply_chat_template(messages, add_generation_prompt=add_generation_prompt) == expected
    assert expected.endswith("<|im_start|>assistant\n") == add_generation_prompt


def test_chat_tokens_parse_control_tokens_and_add_no_bos_when_the_file_says_not_to(demo):
    ids = demo.chat_tokens(CONVERSATION[1:2])
    im_start = demo.tokenize("<|im_start|>", special=True)
    assert len(im_start) == 1 and ids[0] == im_start[0]
    assert ids == demo.tokenize(demo.apply_chat_template(CONVERSATION[1:2]), special=True)


def test_llama2_fallback_format_and_a_single_bos(llama2):
    assert "tokenizer.chat_template" not in llama2.metadata
    text = llama2.apply_chat_template(CONVERSATION)
    assert text == ("<s>[INST] <<SYS>>\nYou answer in one word.\n<</SYS>>\n\nCapital of France? [/INST] Paris. </s>"
                    "<s>[INST] And of Japan? 日本 🗾 [/INST]")
    ids = llama2.chat_tokens(CONVERSATION)
    bos, eos = llama2.tokenizer.bos_id, llama2.tokenizer.eos_id
    assert ids[0] == bos and ids[1] != bos  # the template's <s> is the one BOS: never doubled
    assert ids.count(bos) == 2 and ids.count(eos) == 1


def test_llama2_fallback_requires_alternating_turns(llama2):
    with pytest.raises(pyllama.ChatTemplateError, match="alternate"):
        llama2.apply_chat_template([{"role": "user", "content": "a"}, {"role": "user", "content": "b"}])


def test_chat_generates_the_reply_of_the_rendered_prompt(demo):
    messages = CONVERSATION[1:2]
    a = demo.chat(messages, max_tokens=8, temperature=0).text()
    b = demo.complete(demo.chat_tokens(messages), max_tokens=8, temperature=0)
    assert a.token_ids == b.token_ids and a.text == b.text


def test_transformers_environment_helpers():
    template = ("{{ messages | tojson }}{% for m in messages %}{% if m.role == 'x' %}{% break %}{% endif %}"
                "{% endfor %}{% if strftime_now('%Y') | int < 2000 %}bad{% endif %}")
    out = render_chat_template(template, [{"role": "user", "content": "é"}], add_generation_prompt=True,
                               bos_token="", eos_token="")
    assert out == '[{"role": "user", "content": "é"}]'


@pytest.mark.parametrize("template, match", [
    ("{{ raise_exception('no system role') }}", "no system role"),
    ("{{ ''.__class__.__mro__[1].__subclasses__() }}", "chat template failed"),
    ("{% for %}", "not valid Jinja2"),
    ("{% set _ = messages.append(1) %}", "chat template failed"),
])
def test_bad_or_hostile_templates_raise_chat_template_error(template, match):
    with pytest.raises(pyllama.ChatTemplateError, match=match):
        render_chat_template(template, [{"role": "user", "content": "hi"}], add_generation_prompt=True,
                             bos_token="", eos_token="")


@pytest.mark.parametrize("messages, match", [
    ("hello", "list of"),
    ([], "empty"),
    ([{"role": "user"}], r"messages\[0\]\['content'\]"),
    ([{"role": 3, "content": "x"}], r"messages\[0\]\['role'\]"),
    (["user: hi"], r"messages\[0\] must be a dict"),
])
def test_malformed_messages_raise_value_error(demo, messages, match):
    with pytest.raises(ValueError, match=match):
        demo.apply_chat_template(messages)
