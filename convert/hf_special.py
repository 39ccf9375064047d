"""Special tokens, "add BOS/EOS" flags and the chat template of a Hugging Face tokenizer folder,
decided as llama.cpp's converter (gguf-py's SpecialVocab) decides them:

1. tokenizer.json's post-processor says which tokens encoding adds: a ByteLevel step adds
   none, RobertaProcessing adds BOS, EOS and SEP, and a TemplateProcessing's single-sequence
   template names the token it starts with (BOS) and ends with (EOS); the pair template tells
   whether a separator goes between two sequences.
2. tokenizer_config.json: the chat template (or chat_template.jinja / chat_template.json
   beside it), add_<kind>_token flags where step 1 set none, and <kind>_token texts, whose ids
   are looked up among tokenizer.json's added tokens.
3. config.json: <kind>_token_id for kinds still without an id.
Ids at or past `n_vocab` (when given) are ignored.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Optional

from .._core import PyllamaError
from .jsonfile import read_json_object, read_optional_object
from .vocab import ChatTemplate

KINDS = ("bos", "eos", "unk", "sep", "pad", "cls", "mask")


class SpecialTokens:
    def __init__(self, folder: Path, n_vocab: Optional[int]) -> None:
        self.ids: Dict[str, int] = {}
        self.add: Dict[str, bool] = {}
        self.chat_template: Optional[ChatTemplate] = None
        self._n_vocab = n_vocab
        self._kinds: List[str] = list(KINDS)
        tokenizer = read_optional_object(folder / "tokenizer.json")
        config = read_optional_object(folder / "tokenizer_config.json")
        added_tokens = tokenizer.get("added_tokens", []) if tokenizer else []
        if not isinstance(added_tokens, list):
            raise PyllamaError(f"{folder / 'tokenizer.json'}: added_tokens is not a list")
        if tokenizer is not None:
            self._read_post_processor(tokenizer.get("post_processor"), config)
        if config is not None:
            self._read_tokenizer_config(folder, config, added_tokens)
        model_config = read_optional_object(folder / "config.json") or {}
        for kind in self._kinds:
            token_id = model_config.get(f"{kind}_token_id")
            if token_id is None and isinstance(model_config.get("text_config"), dict):
                token_id = model_config["text_config"].get(f"{kind}_token_id")
            self._set(kind, token_id, folder / "config.json")

    def _set(self, kind: str, token_id: Any, source: Path) -> None:
        if not isinstance(token_id, int) or isinstance(token_id, bool):
            return
        if token_id < 0:
            raise PyllamaError(f"{source}: invalid {kind} token id {token_id}")
        if (self._n_vocab is None or token_id < self._n_vocab) and kind not in self.ids:
            self.ids[kind] = token_id

    def _read_post_processor(self, post: Any, config: Optional[Dict[str, Any]]) -> None:
        if not isinstance(post, dict):
            return
        cfg = config if config is not None else {}
        # Texts (or, as tokenizer_config.json may hold them, AddedToken dicts) of the specials.
        bos, cls, eos, sep = cfg.get("bos_token"), cfg.get("cls_token"), cfg.get("eos_token"), cfg.get("sep_token")
        if not bos and cls and config:
            config["bos_token"] = bos = cls
        if not eos and sep and config:
            config["eos_token"] = eos = sep
        processors = post.get("processors", [post])
        for proc in processors if isinstance(processors, list) else []:
            if not isinstance(proc, dict):
                continue
            kind = proc.get("type")
            if kind == "ByteLevel":
                self.add.setdefault("bos", False)
                self.add.setdefault("eos", False)
            elif kind == "RobertaProcessing":
                self.add.update(bos=True, eos=True, sep=True)
                if not cls and config:
                    config["cls_token"] = cls = _first(proc.get("cls"), bos)
                if not sep and config:
                    config["sep_token"] = sep = _first(proc.get("sep"), eos)
            elif kind == "TemplateProcessing":
                bos, cls, eos, sep = self._read_template(proc, config, bos, cls, eos, sep)

    def _read_template(self, proc: Dict[str, Any], config: Optional[Dict[str, Any]],
                       bos: Any, cls: Any, eos: Any, sep: Any) -> tuple:
        single, pair = proc.get("single") or [], proc.get("pair") or []
        first = last = None
        if isinstance(single, list) and len(single) > 1:
            first = _special_id(single[0])
            if first:
                if not config:
                    bos = first
                elif first not in (bos, cls):
                    if not bos:
                        config["bos_token"] = bos = first
                    if not cls:
                        config["cls_token"] = cls = first
                self.add["bos"] = first in (bos, cls)
            last = _special_id(single[-1])
            if last:
                if not config:
                    eos = last
                elif last != eos:
                    # The template ends with a token other than EOS: the old EOS becomes the
                    # end-of-turn (or end-of-message) token, and the template's last one EOS.
                    for extra in ("eot", "eom"):
                        if extra not in self._kinds:
                            self._kinds.append(extra)
                            config[f"{extra}_token"] = eos
                            break
                    config["eos_token"] = eos = last
                self.add["eos"] = last == eos
        if isinstance(pair, list) and pair:
            start = 1 if first and _special_id(pair[0]) == first else 0
            stop = -1 if last and _special_id(pair[-1]) == last else None
            middle = pair[start:stop]
            if middle and _sequence_id(middle[0]) == "A" and _sequence_id(middle[-1]) == "B" and middle[1:-1]:
                between = middle[1:-1]
                add_sep = False
                entry = _special_id(between[0])
                if entry and entry in (sep, eos) and not last:
                    add_sep = True
                second = _special_id(between[1]) if len(between) == 2 else None
                if second and second in (sep, eos):
                    add_sep = True
                self.add["sep"] = add_sep
                if add_sep and not sep and config:
                    config["sep_token"] = eos
        return bos, cls, eos, sep

    def _read_tokenizer_config(self, folder: Path, config: Dict[str, Any], added_tokens: list) -> None:
        template: Any = None
        jinja = folder / "chat_template.jinja"
        if jinja.is_file():
            template = jinja.read_text(encoding="utf-8")
            extra = sorted((folder / "additional_chat_templates").glob("*.jinja"))
            if extra:
                template = [{"name": "default", "template": template}] + [
                    {"name": p.stem, "template": p.read_text(encoding="utf-8")} for p in extra]
        elif (folder / "chat_template.json").is_file():
            template = read_json_object(folder / "chat_template.json").get("chat_template")
        template = config.get("chat_template", template)
        if isinstance(template, (str, list)):
            self.chat_template = template
        for kind in self._kinds:
            flag = config.get(f"add_{kind}_token")
            if isinstance(flag, bool) and kind not in self.add:
                self.add[kind] = flag
            entry = config.get(f"{kind}_token")
            text = entry.get("content") if isinstance(entry, dict) else entry
            if not isinstance(text, str):
                continue
            token_id = next((t.get("id") for t in added_tokens if isinstance(t, dict) and t.get("content") == text),
                            None)
            self._set(kind, token_id, folder / "tokenizer.json")


def _template_id(item: Any, kind: str) -> Any:
    """The id of a template piece {kind: {"id": ...}} ("SpecialToken" or "Sequence"), else None."""
    inner = item.get(kind) if isinstance(item, dict) else None
    return inner.get("id") if isinstance(inner, dict) else None


def _special_id(item: Any) -> Any:
    return _template_id(item, "SpecialToken")


def _sequence_id(item: Any) -> Any:
    return _template_id(item, "Sequence")


def _first(value: Any, default: Any) -> Any:
    return value[0] if isinstance(value, list) and value else default


def read_add_prefix_space(folder: Path) -> Optional[bool]:
    """tokenizer_config.json's add_prefix_space, which llama.cpp copies to add_space_prefix."""
    config = read_optional_object(folder / "tokenizer_config.json") or {}
    value = config.get("add_prefix_space")
    return value if isinstance(value, bool) else None

