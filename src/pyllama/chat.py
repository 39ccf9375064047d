"""Chat prompts: OpenAI-style messages rendered through the model's Jinja2 chat template.

Templates come from model files, so they are untrusted code: they run in Jinja2's immutable
sandbox, with the same environment transformers gives them (trim_blocks, lstrip_blocks, loop
controls, a `tojson` that keeps non-ASCII text, `raise_exception`, `strftime_now`), so a
template renders here exactly as it does there. Files without a template get Llama 2's
[INST]/<<SYS>> format.
"""
from __future__ import annotations

import json
from datetime import datetime
from functools import lru_cache
from typing import Any, Dict, List, Mapping, Optional, Sequence

# Llama 2 chat's format: an optional system prompt folded into the first user turn, each
# exchange wrapped in BOS ... EOS, the user's text inside [INST] ... [/INST].
LLAMA2_CHAT_TEMPLATE = (
    "{% if messages and messages[0]['role'] == 'system' %}"
    "{% set system = '<<SYS>>\\n' + messages[0]['content'] + '\\n<</SYS>>\\n\\n' %}"
    "{% set turns = messages[1:] %}"
    "{% else %}{% set system = '' %}{% set turns = messages %}{% endif %}"
    "{% for message in turns %}"
    "{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Llama 2 chat needs user and assistant turns to alternate, starting with user') }}"
    "{% endif %}"
    "{% if message['role'] == 'user' %}"
    "{{ bos_token + '[INST] ' + (system if loop.first else '') + message['content'] | trim + ' [/INST]' }}"
    "{% else %}{{ ' ' + message['content'] | trim + ' ' + eos_token }}{% endif %}"
    "{% endfor %}"
)

Message = Mapping[str, Any]


class ChatTemplateError(ValueError):
    """The chat template failed to render these messages (it raised, or is not valid Jinja2)."""


def check_messages(messages: Sequence[Message]) -> List[Dict[str, Any]]:
    """The messages as plain dicts; ValueError naming the first malformed one."""
    if isinstance(messages, (str, bytes)) or not isinstance(messages, Sequence):
        raise ValueError(f"messages must be a list of {{'role': ..., 'content': ...}} dicts, "
                         f"got {type(messages).__name__}")
    if not messages:
        raise ValueError("messages is empty")
    out = []
    for i, m in enumerate(messages):
        if not isinstance(m, Mapping):
            raise ValueError(f"messages[{i}] must be a dict with 'role' and 'content', got {type(m).__name__}")
        for key in ("role", "content"):
            if not isinstance(m.get(key), str):
                raise ValueError(f"messages[{i}]['{key}'] must be a string, got {m.get(key)!r}")
        out.append(dict(m))
    return out


def render_chat_template(template: str, messages: Sequence[Message], *, add_generation_prompt: bool,
                         bos_token: str, eos_token: str, **extra: Any) -> str:
    """The prompt text of `messages` under `template` (ChatTemplateError when it fails)."""
    import jinja2

    msgs = check_messages(messages)
    try:
        compiled = _compile(template)
        return compiled.render(messages=msgs, add_generation_prompt=add_generation_prompt,
                               bos_token=bos_token, eos_token=eos_token, **extra)
    except ChatTemplateError:
        raise
    except jinja2.TemplateError as e:
        raise ChatTemplateError(f"chat template failed: {e}") from e


@lru_cache(maxsize=8)
def _compile(template: str) -> Any:
    import jinja2
    import jinja2.ext
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    def raise_exception(message: str) -> None:
        raise ChatTemplateError(f"chat template refused the messages: {message}")

    def tojson(x: Any, ensure_ascii: bool = False, indent: Optional[int] = None,
               separators: Any = None, sort_keys: bool = False) -> str:
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)

    def strftime_now(fmt: str) -> str:
        return datetime.now().strftime(fmt)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                        extensions=[jinja2.ext.loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = strftime_now
    try:
        return env.from_string(template)
    except jinja2.TemplateSyntaxError as e:
        raise ChatTemplateError(f"chat template is not valid Jinja2 (line {e.lineno}): {e.message}") from e
