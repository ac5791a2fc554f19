"""Read an Ollama Modelfile back and render its TEMPLATE as Ollama would, for the constructs ftapp writes.

ftapp writes TEMPLATEs of one shape: literal text, ``{{ .Prompt }}``, and ``{{ range .Messages }}`` over one
``{{ if eq .Role "..." }} ... {{ else if ... }} ... {{ end }}`` chain printing ``{{ .Content }}``, with
``{{ "{{" }}`` for a literal brace pair. This renderer knows exactly those and fails on anything else, so a test
compares what Ollama will feed the model with what training fed it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

ACTION = re.compile(r"\{\{(.*?)\}\}", re.S)


@dataclass
class Modelfile:
    source: str  # FROM
    template: str
    system: str | None = None
    stops: list[str] = field(default_factory=list)
    parameters: dict[str, str] = field(default_factory=dict)


def read_modelfile(text: str) -> Modelfile:
    source = re.search(r"^FROM (.+)$", text, re.M)
    template = re.search(r'^TEMPLATE """(.*?)"""', text, re.M | re.S)
    assert source and template, f"no FROM or TEMPLATE in:\n{text}"
    system = re.search(r'^SYSTEM """(.*?)"""', text, re.M | re.S)
    stops = [s.encode().decode("unicode_escape") for s in re.findall(r'^PARAMETER stop "(.*)"$', text, re.M)]
    parameters = dict(re.findall(r"^PARAMETER (?!stop )(\S+) (.+)$", text, re.M))
    return Modelfile(source.group(1), template.group(1), system.group(1) if system else None, stops, parameters)


def render(template: str, messages: list[dict[str, str]] | None = None, prompt: str = "") -> str:
    """The TEMPLATE for ``messages`` (chat) or ``prompt`` (raw text)."""
    tokens = _tokens(template)
    out, _ = _run(tokens, 0, {"Messages": messages or [], "Prompt": prompt}, stop=())
    return out


def _tokens(template: str) -> list[tuple[str, str]]:
    tokens, position = [], 0
    for match in ACTION.finditer(template):
        tokens.append(("text", template[position : match.start()]))
        action = match.group(1)
        assert not action.startswith("-") and not action.endswith("-"), "ftapp writes no whitespace trimming"
        tokens.append(("action", action.strip()))
        position = match.end()
    tokens.append(("text", template[position:]))
    return tokens


def _run(tokens: list[tuple[str, str]], i: int, scope: dict, stop: tuple[str, ...]) -> tuple[str, int]:
    out = []
    while i < len(tokens):
        kind, value = tokens[i]
        if kind == "text":
            out.append(value)
            i += 1
        elif value.startswith(stop) and stop:
            return "".join(out), i
        elif value == "range .Messages":
            body_start, end = i + 1, _matching_end(tokens, i + 1)
            for message in scope["Messages"]:
                text, _ = _run(tokens[body_start:end], 0, {**scope, "Role": message["role"], "Content": message["content"]}, stop=())
                out.append(text)
            i = end + 1
        elif value.startswith("if "):
            text, i = _if_chain(tokens, i, scope)
            out.append(text)
        elif value in (".Prompt", ".Content"):
            out.append(scope[value[1:]])
            i += 1
        elif value == '"{{"':
            out.append("{{")
            i += 1
        else:
            raise AssertionError(f"a template action ftapp does not write: {{{{ {value} }}}}")
    return "".join(out), i


def _if_chain(tokens: list[tuple[str, str]], i: int, scope: dict) -> tuple[str, int]:
    chosen, end = None, _matching_end(tokens, i + 1)
    branch = i
    while branch < end:
        condition = tokens[branch][1].removeprefix("else ").removeprefix("if ")
        match = re.fullmatch(r'eq \.Role "(\w+)"', condition)
        assert match, f"an if ftapp does not write: {condition}"
        nxt = next(
            (
                k
                for k in range(branch + 1, end)
                if tokens[k] == ("action", tokens[k][1]) and tokens[k][1].startswith("else") and _depth(tokens, branch + 1, k) == 0
            ),
            end,
        )
        if chosen is None and scope["Role"] == match.group(1):
            chosen, _ = _run(tokens[branch + 1 : nxt], 0, scope, stop=())
        branch = nxt
    return chosen or "", end + 1


def _depth(tokens: list[tuple[str, str]], start: int, stop: int) -> int:
    depth = 0
    for kind, value in tokens[start:stop]:
        if kind == "action" and (value.startswith("if ") or value.startswith("range ")):
            depth += 1
        elif kind == "action" and value == "end":
            depth -= 1
    return depth


def _matching_end(tokens: list[tuple[str, str]], start: int) -> int:
    depth = 0
    for k in range(start, len(tokens)):
        kind, value = tokens[k]
        if kind != "action":
            continue
        if value.startswith("if ") or value.startswith("range "):
            depth += 1
        elif value == "end":
            if depth == 0:
                return k
            depth -= 1
    raise AssertionError("an action without its {{ end }}")
