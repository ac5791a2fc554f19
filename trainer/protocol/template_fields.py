"""Prompt templates are plain ``{column}`` fields and literal text. Standard library only.

The one rule for every place that checks or fills a template: ftapp when a prompt is saved,
previewed or used (PR-007), and the trainer when it renders rows. A field is a column name and
nothing else: no format spec (``{a:>10}``, ``{a:>{b}}``), no conversion (``{a!r}``), no attribute
or index access (``{a.b}``, ``{a[0]}``), no positional field (``{}``, ``{0}``). ``{{`` and ``}}``
are literal braces. ``render_template`` substitutes plain fields only, so a template that slipped
past the checks (an import, a direct write) is refused before any row is formatted: no format
spec ever reaches ``str.format`` (``{prompt:>{w}}`` with ``w = 10**7`` would allocate per row).
"""

from __future__ import annotations

import string
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

_SHOWN = 60  # characters of a field quoted in a message


class TemplateError(ValueError):
    """A template that is not plain ``{column}`` fields; ``problems`` has one sentence per offence."""

    def __init__(self, problems: list[str]):
        self.problems = list(problems)
        super().__init__("; ".join(self.problems))


def _quoted(text: str) -> str:
    return repr(text if len(text) <= _SHOWN else text[: _SHOWN - 3] + "...")


def template_problems(template: str) -> tuple[list[str], list[str]]:
    """The template's column names in order of first use, and a sentence per offending field.

    Each sentence reads after the template's name: ``"prompt_template " + sentence``."""
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as error:
        return [], [f"is not a valid template ({error}); write a literal brace as '{{{{' or '}}}}'"]
    names: list[str] = []
    problems: list[str] = []
    for _literal, name, spec, conversion in parsed:
        if name is None:
            continue
        field = "{" + name + (f"!{conversion}" if conversion else "") + (f":{spec}" if spec else "") + "}"
        if name == "" or name.isdigit():
            problems.append(f"has a positional placeholder {_quoted(field)}; name the column, e.g. '{{instruction}}'")
        elif any(c in name for c in ".["):
            problems.append(f"placeholder {_quoted(field)} uses attribute or index access; use a plain column name")
        elif conversion:
            problems.append(
                f"placeholder {_quoted(field)} has a conversion ('!{conversion}'); write the plain column {_quoted('{' + name + '}')}"
            )
        elif spec:
            problems.append(
                f"placeholder {_quoted(field)} has a format spec; templates take plain fields only, write {_quoted('{' + name + '}')}"
            )
        elif name not in names:
            names.append(name)
    return names, problems


def is_plain_field(name: str) -> bool:
    """Whether a column name can be a template field (no braces, dots, brackets, '!' or ':')."""
    names, problems = template_problems("{" + name + "}")
    return not problems and names == [name]


@lru_cache(maxsize=64)
def compile_template(template: str) -> tuple[tuple[str, str | None], ...]:
    """(literal text, field name or None) pairs; raises TemplateError for anything but plain fields."""
    _names, problems = template_problems(template)
    if problems:
        raise TemplateError(problems)
    return tuple((literal, name) for literal, name, _spec, _conversion in string.Formatter().parse(template))


def render_template(template: str, row: Mapping[str, Any]) -> str:
    """The template with each ``{column}`` replaced by ``str(row[column])`` (None as ""), nothing else.

    Raises TemplateError for a template that is not plain fields and KeyError for a missing column."""
    parts: list[str] = []
    for literal, name in compile_template(template):
        parts.append(literal)
        if name is not None:
            value = row[name]
            parts.append("" if value is None else str(value))
    return "".join(parts)
