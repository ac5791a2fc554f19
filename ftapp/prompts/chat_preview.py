"""Conversations rendered through a model's chat template, split into trained and masked parts.

The Prompts tab shows ``messages``/``sharegpt`` rows the way the trainer feeds them: through the
model's chat template, with the assistant turns (what the loss is taken on) told apart from the
rest (system and user turns, role headers: masked). transformers is not imported here (the app
never loads it); the template is rendered with jinja2 the way ``apply_chat_template`` does it: an
``ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)`` with ``raise_exception``.

Which text belongs to which message is found by rendering the conversation's prefixes
(``messages[:i]``) and diffing successive renders against the full one. An assistant message's
span starts with its role header; the part ``add_generation_prompt`` renders for it (the header
the model is prompted with) is masked, the rest of the span is trained, as with TRL's
``assistant_only_loss``.
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jinja2
import jinja2.ext
from jinja2.sandbox import ImmutableSandboxedEnvironment

from ftapp.errors import FtappError

if TYPE_CHECKING:
    from ftapp.datasets.service import DatasetService
    from ftapp.services import Services
    from storage import DatasetRecord, ModelRecord

CHAT_FORMATS = ("messages", "sharegpt")
SHAREGPT_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant", "system": "system"}
TEMPLATE_FILE = "chat_template.jinja"
CONFIG_FILES = ("tokenizer_config.json", "special_tokens_map.json")

Message = dict[str, str]
# A preview renders the conversation's prefixes too (2 x messages + 1 renders): the budget is for all of them.
RENDER_LINES = 1_000_000
MAX_RESULT_CHARS = 1_000_000  # of one string or list a template's arithmetic makes


@dataclass(frozen=True)
class Segment:
    text: str
    trained: bool


@dataclass(frozen=True)
class ChatTemplate:
    """A model's chat template and the special-token strings it may refer to."""

    template: str
    bos_token: str = ""
    eos_token: str = ""


def _read_json(path: Path) -> dict:
    try:
        loaded = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return loaded if isinstance(loaded, dict) else {}


def _token_text(value: Any) -> str | None:
    # tokenizer_config.json stores special tokens as strings or as serialized AddedTokens.
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and isinstance(value.get("content"), str):
        return value["content"]
    return None


def load_chat_template(model_dir: Path) -> str | None:
    """The chat template of a local model directory, or None when it has none.

    ``chat_template.jinja`` (what transformers 5 writes) wins over ``tokenizer_config.json``'s
    ``chat_template``; a list of named templates there yields the one named ``default``.
    """
    model_dir = Path(model_dir)
    jinja_file = model_dir / TEMPLATE_FILE
    if jinja_file.is_file():
        text = jinja_file.read_text(encoding="utf-8")
        if text.strip():
            return text
    value = _read_json(model_dir / "tokenizer_config.json").get("chat_template")
    if isinstance(value, list):
        named = {t.get("name"): t.get("template") for t in value if isinstance(t, dict)}
        value = named.get("default")
    return value if isinstance(value, str) and value.strip() else None


def load_special_tokens(model_dir: Path) -> tuple[str, str]:
    """(bos_token, eos_token) strings of a local model directory; "" where it names none."""
    found: dict[str, str] = {}
    for name in CONFIG_FILES:  # tokenizer_config.json first: it is what the tokenizer loads
        config = _read_json(Path(model_dir) / name)
        for key in ("bos_token", "eos_token"):
            text = _token_text(config.get(key))
            if key not in found and text is not None:
                found[key] = text
    return found.get("bos_token", ""), found.get("eos_token", "")


def load_model_template(model_dir: Path) -> ChatTemplate | None:
    template = load_chat_template(model_dir)
    if template is None:
        return None
    return ChatTemplate(template, *load_special_tokens(model_dir))


def _raise_exception(message: str) -> None:
    raise jinja2.exceptions.TemplateError(message)


def _tojson(value: Any, ensure_ascii: bool = False, indent: int | None = None, separators: Any = None, sort_keys: bool = False) -> str:
    # As transformers does: jinja's own tojson escapes HTML characters, which templates do not expect.
    return json.dumps(value, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


def _strftime_now(format: str) -> str:
    return datetime.now().strftime(format)


class _BoundedEnvironment(ImmutableSandboxedEnvironment):
    """jinja's sandbox with bounded arithmetic: a model's template is a stranger's program (a GGUF file's metadata, a
    Hub repo's file) run in the app's process, and ``{{ 'a' * 10**10 }}`` or a string doubled in a loop would take
    the process's memory before anything else could stop it."""

    intercepted_binops = frozenset({"*", "**", "+"})

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        if operator == "**" and isinstance(left, int) and isinstance(right, int) and right > 0:
            if max(left.bit_length(), 1) * right > MAX_RESULT_CHARS:
                raise jinja2.exceptions.SecurityError(f"{left} ** {right} is too large for a chat template")
        elif operator in ("*", "+") and _result_length(operator, left, right) > MAX_RESULT_CHARS:
            raise jinja2.exceptions.SecurityError(f"a value of more than {MAX_RESULT_CHARS:,} items is too large for a chat template")
        return super().call_binop(context, operator, left, right)


def _result_length(operator: str, left: Any, right: Any) -> int:
    sized = (str, list, tuple)
    if operator == "+":
        return len(left) + len(right) if isinstance(left, sized) and isinstance(right, sized) else 0
    for sequence, times in ((left, right), (right, left)):
        if isinstance(sequence, sized) and isinstance(times, int):
            return len(sequence) * times
    return 0


class TemplateTooSlow(FtappError):
    """A chat template that ran past ``RENDER_LINES`` lines of its compiled code: a loop no conversation needs."""


@contextmanager
def _bounded_work(lines: int) -> Iterator[None]:
    """Run the body with at most ``lines`` traced lines of Python (this thread's): jinja compiles a template to Python,
    and nested loops over ``range(100000)`` would hold a request thread for hours. Normal templates run a few hundred."""
    left = lines
    before = sys.gettrace()

    def count(frame: Any, event: str, arg: Any) -> Any:
        nonlocal left
        if event == "line":
            left -= 1
            if left < 0:
                raise TemplateTooSlow(f"the chat template ran past {lines:,} steps without finishing; it is not previewed")
        return count

    sys.settrace(count)
    try:
        yield
    finally:
        sys.settrace(before)


def _compile(template: str) -> jinja2.Template:
    env = _BoundedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[jinja2.ext.loopcontrols])
    env.filters["tojson"] = _tojson
    env.globals["raise_exception"] = _raise_exception
    env.globals["strftime_now"] = _strftime_now
    # {% generation %} markers (TRL's training templates) only delimit text: render their body.
    return env.from_string(_strip_generation_tags(template))


def _strip_generation_tags(template: str) -> str:
    return re.sub(r"\{%-?\s*(end)?generation\s*-?%\}", "", template)


def _common_prefix(a: str, b: str) -> int:
    return len(os.path.commonprefix([a, b]))


def render_conversation(template: str, messages: list[Message], bos_token: str = "", eos_token: str = "") -> list[Segment]:
    """``messages`` rendered through ``template``, as segments whose texts join to the full render.

    Assistant messages are trained (less the header a generation prompt renders), everything
    else (template preamble, system and user turns) is masked. Raises FtappError when the template
    cannot render the whole conversation.
    """
    with _bounded_work(RENDER_LINES):
        return _segments(_compile(template), messages, bos_token, eos_token)


def _segments(compiled: jinja2.Template, messages: list[Message], bos_token: str, eos_token: str) -> list[Segment]:
    def render(prefix: list[Message], generation_prompt: bool = False) -> str | None:
        try:
            return compiled.render(messages=prefix, add_generation_prompt=generation_prompt, bos_token=bos_token, eos_token=eos_token)
        except jinja2.exceptions.TemplateError:
            return None  # e.g. a template that refuses an empty conversation or a partial one

    try:
        full = compiled.render(messages=messages, add_generation_prompt=False, bos_token=bos_token, eos_token=eos_token)
    except jinja2.exceptions.TemplateError as error:
        raise FtappError(f"the chat template cannot render this conversation: {error}") from error

    # boundaries[i]: where message i starts in the full render; boundaries[n] is its end. A prefix
    # that does not render as a prefix of the full text (a template that rewrites earlier turns)
    # counts up to the common part; one that does not render at all goes to the next message.
    boundaries: list[int] = []
    for i in range(len(messages) + 1):
        rendered = full if i == len(messages) else render(messages[:i])
        at = _common_prefix(rendered, full) if rendered is not None else 0
        boundaries.append(max([at, *boundaries[-1:]]))

    segments: list[Segment] = []

    def add(text: str, trained: bool) -> None:
        if not text:
            return
        if segments and segments[-1].trained == trained:
            segments[-1] = Segment(segments[-1].text + text, trained)
        else:
            segments.append(Segment(text, trained))

    add(full[: boundaries[0]], False)  # the template's preamble (BOS, a default system prompt)
    for i, message in enumerate(messages):
        start, end = boundaries[i], boundaries[i + 1]
        if message.get("role") != "assistant":
            add(full[start:end], False)
            continue
        prompted = render(messages[:i], generation_prompt=True)
        header_end = start if prompted is None else min(max(_common_prefix(prompted, full), start), end)
        add(full[start:header_end], False)
        add(full[header_end:end], True)
    return segments


def _content(value: Any) -> str:
    if isinstance(value, list):  # OpenAI content parts: keep the text ones
        return "".join(part.get("text") or "" for part in value if isinstance(part, dict))
    return "" if value is None else str(value)


def messages_turns(row: dict) -> list[Message]:
    """A ``messages`` row's turns as plain role/content pairs (extra keys dropped, as the trainer does)."""
    return [{"role": str(turn.get("role")), "content": _content(turn.get("content"))} for turn in row.get("messages") or []]


def sharegpt_turns(row: dict) -> list[Message]:
    """A ``sharegpt`` row's ``conversations`` as messages: human→user, gpt→assistant, other speakers
    kept as their role; a ``system`` column becomes a leading system turn when none is there."""
    turns = []
    for turn in row.get("conversations") or []:
        speaker = str(turn.get("from"))
        turns.append({"role": SHAREGPT_ROLES.get(speaker.lower(), speaker), "content": _content(turn.get("value"))})
    system = row.get("system")
    if system and not any(turn["role"] == "system" for turn in turns):
        turns.insert(0, {"role": "system", "content": str(system)})
    return turns


def row_messages(row: dict, dataset_format: str) -> list[Message]:
    if dataset_format == "messages":
        return messages_turns(row)
    if dataset_format == "sharegpt":
        return sharegpt_turns(row)
    raise FtappError(f"only messages or sharegpt data renders through a chat template (this is {dataset_format})")


def model_template(model: ModelRecord) -> ChatTemplate:
    """The chat template of a registered model; FtappError when it has no local one."""
    if not model.location:
        raise FtappError(
            f"model '{model.name}' has no local directory to read a chat template from "
            f"(it is the Hub model {model.huggingface_name}); register a local copy to preview conversations"
        )
    directory = Path(model.location)
    if not directory.is_dir():
        raise FtappError(f"model '{model.name}': its directory {directory} is gone")
    template = load_model_template(directory)
    if template is None:
        raise FtappError(
            f"model '{model.name}' has no chat template ({TEMPLATE_FILE} or tokenizer_config.json's chat_template "
            f"in {directory}); conversations need one to train as chats"
        )
    return template


def chat_preview(datasets: DatasetService, model: ModelRecord, dataset: DatasetRecord, limit: int = 3) -> list[list[Segment]]:
    """The dataset's first ``limit`` rows rendered through the model's chat template, as segments."""
    if dataset.format not in CHAT_FORMATS:
        raise FtappError(
            f"dataset '{dataset.name}' is {dataset.format} data; only messages or sharegpt data renders through a chat template"
        )
    template = model_template(model)
    rows = datasets.read_rows(dataset, 0, limit)
    return [
        render_conversation(template.template, row_messages(row, dataset.format), template.bos_token, template.eos_token) for row in rows
    ]


def chat_preview_by_id(services: Services, model_id: str, dataset_id: str, limit: int = 3) -> list[list[Segment]]:
    """``chat_preview`` for registered ids (what the UI holds)."""
    return chat_preview(services.datasets, services.models.get(model_id), services.datasets.get(dataset_id), limit)
