"""Conversations rendered through a chat template, in a process of its own: ``python -m ftapp.chat_rendering`` reads
``{"template", "conversations", "bos_token", "eos_token"}`` (JSON) on stdin and writes ``{"segments": [[[text,
trained], ...], ...]}`` or ``{"error": message}`` on stdout. ``ftapp.prompts.chat_preview`` starts it for the
Prompts tab's preview.

A model's chat template is a stranger's program (a GGUF file's metadata, a Hub repo's file). jinja's sandbox keeps it
from reaching Python's internals but not from taking memory or time: ``{{ 'a' * 10**10 }}``, a string doubled with
``~`` in a loop, nested loops over ``range(100000)``. In the app's process one such preview would take the memory of
every user's session or hold a request thread for hours; here the process limits its own address space
(``RENDER_MEMORY_BYTES``) and CPU time, and the app waits for it a bounded time. Arithmetic that would build a huge
value is refused at once with a message that says so.

The template is rendered with jinja2 the way transformers' ``apply_chat_template`` does it (transformers is not
imported: this process starts in a fraction of a second): an ``ImmutableSandboxedEnvironment(trim_blocks=True,
lstrip_blocks=True)`` with ``raise_exception``, ``strftime_now`` and transformers' ``tojson``. Which text belongs to
which message is found by rendering the conversation's prefixes (``messages[:i]``) and diffing successive renders
against the full one. An assistant message's span starts with its role header; the part ``add_generation_prompt``
renders for it (the header the model is prompted with) is masked, the rest of the span is trained, as with TRL's
``assistant_only_loss``.

Only the standard library and jinja2 are imported here.
"""

from __future__ import annotations

import json
import os
import re
import resource
import sys
from datetime import datetime
from typing import Any

import jinja2
import jinja2.ext
from jinja2.sandbox import ImmutableSandboxedEnvironment

Message = dict[str, str]
RENDER_MEMORY_BYTES = 1 << 30  # the rendering process's address space
RENDER_CPU_S = 15  # its CPU time
MAX_RESULT_ITEMS = 1_000_000  # of one string or list a template's arithmetic makes


class TemplateRenderError(Exception):
    """What the parent is told, as its message."""


def _raise_exception(message: str) -> None:
    raise jinja2.exceptions.TemplateError(message)


def _tojson(value: Any, ensure_ascii: bool = False, indent: int | None = None, separators: Any = None, sort_keys: bool = False) -> str:
    # As transformers does: jinja's own tojson escapes HTML characters, which templates do not expect.
    return json.dumps(value, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


def _strftime_now(format: str) -> str:
    return datetime.now().strftime(format)


class _BoundedEnvironment(ImmutableSandboxedEnvironment):
    """jinja's sandbox refusing arithmetic whose result would be huge (a clear message, where the memory limit would
    only say the process stopped)."""

    intercepted_binops = frozenset({"*", "**", "+"})

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        if operator == "**" and isinstance(left, int) and isinstance(right, int) and right > 0:
            if max(left.bit_length(), 1) * right > MAX_RESULT_ITEMS:
                raise jinja2.exceptions.SecurityError(f"{left} ** {right} is too large for a chat template")
        elif operator in ("*", "+") and _result_length(operator, left, right) > MAX_RESULT_ITEMS:
            raise jinja2.exceptions.SecurityError(f"a value of more than {MAX_RESULT_ITEMS:,} items is too large for a chat template")
        return super().call_binop(context, operator, left, right)


def _result_length(operator: str, left: Any, right: Any) -> int:
    sized = (str, list, tuple)
    if operator == "+":
        return len(left) + len(right) if isinstance(left, sized) and isinstance(right, sized) else 0
    for sequence, times in ((left, right), (right, left)):
        if isinstance(sequence, sized) and isinstance(times, int):
            return len(sequence) * times
    return 0


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


def _segments(compiled: jinja2.Template, messages: list[Message], bos_token: str, eos_token: str) -> list[tuple[str, bool]]:
    """(text, trained) spans whose texts join to the full render of ``messages``."""

    def render(prefix: list[Message], generation_prompt: bool = False) -> str | None:
        try:
            return compiled.render(messages=prefix, add_generation_prompt=generation_prompt, bos_token=bos_token, eos_token=eos_token)
        except jinja2.exceptions.TemplateError:
            return None  # e.g. a template that refuses an empty conversation or a partial one

    try:
        full = compiled.render(messages=messages, add_generation_prompt=False, bos_token=bos_token, eos_token=eos_token)
    except jinja2.exceptions.TemplateError as error:
        raise TemplateRenderError(f"the chat template cannot render this conversation: {error}") from error

    # boundaries[i]: where message i starts in the full render; boundaries[n] is its end. A prefix
    # that does not render as a prefix of the full text (a template that rewrites earlier turns)
    # counts up to the common part; one that does not render at all goes to the next message.
    boundaries: list[int] = []
    for i in range(len(messages) + 1):
        rendered = full if i == len(messages) else render(messages[:i])
        at = _common_prefix(rendered, full) if rendered is not None else 0
        boundaries.append(max([at, *boundaries[-1:]]))

    segments: list[tuple[str, bool]] = []

    def add(text: str, trained: bool) -> None:
        if not text:
            return
        if segments and segments[-1][1] == trained:
            segments[-1] = (segments[-1][0] + text, trained)
        else:
            segments.append((text, trained))

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


def render_request(request: dict[str, Any]) -> list[list[tuple[str, bool]]]:
    try:
        compiled = _compile(request["template"])
    except jinja2.exceptions.TemplateError as error:
        raise TemplateRenderError(f"the chat template does not compile: {error}") from error
    bos, eos = request.get("bos_token", ""), request.get("eos_token", "")
    return [_segments(compiled, messages, bos, eos) for messages in request["conversations"]]


def main() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (RENDER_MEMORY_BYTES, RENDER_MEMORY_BYTES))
    resource.setrlimit(resource.RLIMIT_CPU, (RENDER_CPU_S, RENDER_CPU_S))
    try:
        answer: dict[str, Any] = {"segments": render_request(json.loads(sys.stdin.read()))}
    except TemplateRenderError as error:
        answer = {"error": str(error)}
    except MemoryError:
        answer = {"error": f"the chat template needed more than {RENDER_MEMORY_BYTES // 2**30} GiB of memory; it is not previewed"}
    except Exception as error:  # a template's own error that jinja does not wrap (a TypeError, a RecursionError...)
        answer = {"error": f"the chat template failed: {type(error).__name__}: {str(error)[:500]}"}
    sys.stdout.write(json.dumps(answer))


if __name__ == "__main__":
    main()
