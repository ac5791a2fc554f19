"""An Ollama ``Modelfile`` that prompts a GGUF export the way its adapter was trained.

Ollama formats prompts with its own ``TEMPLATE`` (a Go template), not the chat template in the GGUF file, so the
template is written here from the training format:

* ``text`` (an adapter trained on a prompt's templates): the input template, its trailing spaces cut as training
  cut them (``prompt_at_token_boundary``), with ``{{ .Prompt }}`` in place of its one field; a template of
  several fields (or none) leaves the whole prompt to the client: ``{{ .Prompt }}`` alone.
* ``chat``: each turn as the tokenizer's chat template renders it. The template is rendered on marker
  conversations and cut into what comes before and after each role's content, the generation prompt, and a
  default system prompt (Ollama's ``SYSTEM``, used when the client sends none, as the chat template does).
  A template that is not built of such turns is refused rather than approximated.

Stop words are the generation config's and tokenizer's EOS tokens; parameters come from the generation config
(``do_sample`` off, transformers' greedy default, is ``temperature 0``).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from trainer.data.training_data import prompt_at_token_boundary
from trainer.protocol import render_template
from trainer.protocol.template_fields import compile_template

MODELFILE = "Modelfile"
Render = Callable[[list[dict[str, str]], bool], str]  # (turns, add_generation_prompt) -> text, as the chat template renders
# Markers no chat template invents: the content of each probe turn.
SYSTEM, USER, ASSISTANT, USER_2 = "\u27e6S\u27e7", "\u27e6U\u27e7", "\u27e6A\u27e7", "\u27e6V\u27e7"
# The sampling settings Ollama shares with transformers' generation config, by Ollama's name.
PARAMETERS = {"top_k": "top_k", "top_p": "top_p", "min_p": "min_p", "repeat_penalty": "repetition_penalty", "num_predict": "max_new_tokens"}


@dataclass(frozen=True)
class ChatTurns:
    """A chat template cut into literal pieces: ``opening``, then per turn ``before[role] + content + after[role]``,
    then ``generation`` to make the model answer."""

    opening: str
    before: dict[str, str]
    after: dict[str, str]
    generation: str
    default_system: str | None


def chat_turns(render: Render, bos_token: str | None, adds_bos: bool) -> ChatTurns:
    """The pieces of ``render``'s chat template; ValueError when it is not one turn after another."""
    later_user = _split(
        _after(
            render(_turns([("user", USER), ("assistant", ASSISTANT), ("user", USER_2)]), False),
            render(_turns([("user", USER), ("assistant", ASSISTANT)]), False),
            "a second user turn",
        ),
        USER_2,
    )[0]
    # A BOS printed once before the first turn (not the first piece of every turn, as ChatML's <|im_start|> may be).
    once = (
        bool(bos_token)
        and render(_turns([("user", USER)]), False).startswith(bos_token or "")
        and not later_user.startswith(bos_token or "")
    )
    skip = len(bos_token or "") if once else 0

    def probe(turns: list[tuple[str, str]], generation: bool = False) -> str:
        return render(_turns(turns), generation)[skip:]

    user = probe([("user", USER)])
    answered = probe([("user", USER), ("assistant", ASSISTANT)])
    generation = _after(probe([("user", USER)], True), user, "the generation prompt")
    head, user_after = _split(user, USER)
    assistant_before, assistant_after = _split(_after(answered, user, "an assistant turn"), ASSISTANT)
    if not head.endswith(later_user):
        raise ValueError("the chat template renders the first user turn differently from later ones")
    default = head[: len(head) - len(later_user)]
    try:
        with_system = probe([("system", SYSTEM), ("user", USER)])
    except Exception:  # noqa: BLE001 - a template that refuses system turns raises whatever its author chose
        with_system = None
    before, after = {"user": later_user, "assistant": assistant_before}, {"user": user_after, "assistant": assistant_after}
    default_system = None
    if with_system is not None and SYSTEM in with_system:
        system_before, rest = _split(with_system, SYSTEM)
        turn = later_user + USER + user_after
        if not rest.endswith(turn):
            raise ValueError("the chat template renders a user turn differently after a system turn")
        before["system"], after["system"] = system_before, rest[: len(rest) - len(turn)]
        if default and not (default.startswith(system_before) and default.endswith(after["system"])):
            raise ValueError("the chat template opens with text that is not a system turn")
        if default:  # a default system prompt: Ollama's SYSTEM, replaced by the client's own as the template does
            default_system, default = default[len(system_before) : len(default) - len(after["system"])], ""
    # llama.cpp adds BOS itself when the file says so; then the template must not print a second one.
    opening = (bos_token or "") if once and not adds_bos else ""
    return ChatTurns(opening=opening + default, before=before, after=after, generation=generation, default_system=default_system)


def _turns(pairs: list[tuple[str, str]]) -> list[dict[str, str]]:
    return [{"role": role, "content": content} for role, content in pairs]


def _split(text: str, marker: str) -> tuple[str, str]:
    if text.count(marker) != 1:
        raise ValueError("the chat template does not render each turn's content once")
    before, _, after = text.partition(marker)
    return before, after


def _after(longer: str, shorter: str, what: str) -> str:
    if not longer.startswith(shorter):
        raise ValueError(f"the chat template renders the conversation differently once {what} follows")
    return longer[len(shorter) :]


def chat_template(turns: ChatTurns) -> str:
    """The Go template Ollama renders: no ``{{-``, which would trim the newlines the pieces end in."""
    branches = "".join(
        f'{{{{ {"if" if i == 0 else "else if"} eq .Role "{role}" }}}}{_literal(turns.before[role])}{{{{ .Content }}}}'
        f"{_literal(turns.after[role])}"
        for i, role in enumerate(turns.before)
    )
    return f"{_literal(turns.opening)}{{{{ range .Messages }}}}{branches}{{{{ end }}}}{{{{ end }}}}{_literal(turns.generation)}"


def text_template(input_template: str | None) -> str:
    """A raw-text prompt: the input template around ``{{ .Prompt }}`` when it has exactly one field."""
    if not input_template:
        return "{{ .Prompt }}"
    fields = [name for _literal_text, name in compile_template(input_template) if name is not None]
    if len(set(fields)) != 1:
        return "{{ .Prompt }}"
    marker = "\u27e6P\u27e7"
    prompt = prompt_at_token_boundary(render_template(input_template, {fields[0]: marker}), "")["prompt"]
    before, _, after = prompt.partition(marker)
    return f"{_literal(before)}{{{{ .Prompt }}}}{_literal(after)}"


def _literal(text: str) -> str:
    """Text Go templates print as it is: only ``{{`` means something to them."""
    return text.replace("{{", '{{ "{{" }}')


def stop_words(tokenizer: Any, generation: dict[str, Any]) -> list[str]:
    eos = generation.get("eos_token_id")
    ids = eos if isinstance(eos, list) else [eos]
    words = [tokenizer.convert_ids_to_tokens(i) for i in ids if isinstance(i, int)]
    if tokenizer.eos_token:
        words.append(tokenizer.eos_token)
    return list(dict.fromkeys(word for word in words if word))


def parameters(generation: dict[str, Any]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    if not generation.get("do_sample"):
        values["temperature"] = 0  # greedy: what transformers (and ftapp's evaluation) do without do_sample
    elif generation.get("temperature") is not None:
        values["temperature"] = generation["temperature"]
    for ollama, name in PARAMETERS.items():
        value = generation.get(name)
        if value is not None and (generation.get("do_sample") or ollama in ("repeat_penalty", "num_predict")):
            values[ollama] = value
    return values


def modelfile_text(gguf_name: str, template: str, stops: list[str], settings: dict[str, Any], system: str | None, note: str) -> str:
    for text in (template, system or "", *stops):
        if '"""' in text:
            raise ValueError('a Modelfile cannot hold text with """ in it')
    lines = [f"# {line}" for line in note.splitlines()]
    lines += [f"FROM ./{gguf_name}", "", f'TEMPLATE """{template}"""']
    if system is not None:
        lines.append(f'SYSTEM """{system}"""')
    lines += [f"PARAMETER stop {_quoted(word)}" for word in stops]
    lines += [f"PARAMETER {name} {value}" for name, value in settings.items()]
    return "\n".join(lines) + "\n"


def _quoted(word: str) -> str:
    return '"' + word.replace("\\", "\\\\").replace('"', '\\"') + '"'


def ollama_name(name: str, gguf_type: str) -> str:
    """An Ollama model name: lower case letters, digits, '.', '_', '-', tagged with the GGUF type."""
    base = re.sub(r"[^a-z0-9._-]+", "-", name.lower()).strip("-._") or "model"
    return f"{base}:{gguf_type}"
